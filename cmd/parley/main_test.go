package main

import (
	"context"
	"io"
	"testing"

	"github.com/parley-chat/parley/internal/proctest"
)

func TestMain(m *testing.M) { proctest.Main(m) }

// runCmd runs `parley name args...` the way main does, with ctx in place
// of the signals: the command stops when ctx ends.
func runCmd(ctx context.Context, name string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return parley(append([]string{name}, args...), stdin, stdout, stderr, func(run func(context.Context) int) int { return run(ctx) })
}
