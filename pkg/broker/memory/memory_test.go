package memory_test

import (
	"errors"
	"testing"

	"go.uber.org/goleak"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/broker/brokertest"
	"github.com/parley-chat/parley/pkg/broker/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	brokertest.Run(t, func(t *testing.T, h broker.Handler, retention int) broker.Broker {
		return memory.New(memory.Config{Handler: h, Retention: retention})
	}, func(t *testing.T, b broker.Broker) {
		b.(*memory.Broker).Interrupt(errors.New("interrupted by the conformance suite"))
	}, func(t *testing.T, b broker.Broker, _ string) {
		b.(*memory.Broker).Reset()
	})
}

func TestOutboxConformance(t *testing.T) {
	brokertest.RunOutbox(t, func(t *testing.T) broker.Outbox {
		b := memory.New(memory.Config{})
		t.Cleanup(func() { b.Close() })
		return b
	})
}
