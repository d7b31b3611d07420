package loadgen

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine Run and Storm start must be gone when they return.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
