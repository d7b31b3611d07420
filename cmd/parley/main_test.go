package main

import (
	"os"
	"testing"

	"github.com/parley-chat/parley/internal/proctest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	proctest.Cleanup()
	os.Exit(code)
}
