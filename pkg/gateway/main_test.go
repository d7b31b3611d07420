package gateway_test

import (
	"errors"
	"testing"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func asCloseError(err error, ce *websocket.CloseError) bool { return errors.As(err, ce) }
