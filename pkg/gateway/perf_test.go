package gateway_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/gateway"
	"github.com/parley-chat/parley/pkg/protocol"
)

// A client that stops reading while its queue still has room is dropped
// once one write has been stuck for WriteTimeout (the per-connection write
// watchdog), and the other members carry on.
func TestStuckWriteIsCutByWriteTimeout(t *testing.T) {
	c := newCluster(t, 1, func(cfg *gateway.Config) {
		cfg.OutboundQueue = 100000  // never the slow-consumer close,
		cfg.OutboundBytes = 1 << 30 // by count or by bytes
		cfg.WriteTimeout = 300 * time.Millisecond
		cfg.RateLimit, cfg.RateBurst = 10000, 10000
		cfg.MaxBodyBytes = 64 << 10
	})
	n := c.gws[0]
	stuck := connectBuf(t, n, 1)
	stuck.send(protocol.Frame{Type: "hello", User: "stuck"})
	stuck.expect("welcome")
	stuck.join("r", nil)
	fast := login(t, n, "fast", "phone")
	fast.join("r", nil)
	sender := login(t, n, "sender", "bot")
	big := strings.Repeat("x", 32<<10)
	sent := 0
	for i := 1; i <= 400 && scrapeValue(t, n, "parley_connections") > 2; i++ {
		sender.post("r", fmt.Sprintf("m%d", i), big)
		sent = i
	}
	waitFor(t, 10*time.Second, "the stuck connection dropped", func() bool { return scrapeValue(t, n, "parley_connections") == 2 })
	if got := scrapeValue(t, n, "parley_slow_consumer_closes_total"); got != 0 {
		t.Fatalf("slow-consumer closes = %v, want 0 (the write timeout should cut it)", got)
	}
	ack, _ := sender.post("r", "last", "last")
	got := fast.messages(int(ack.Seq))
	for k, m := range got {
		if m.Seq != int64(k+1) {
			t.Fatalf("fast client: message %d has seq %d (after %d sends)", k, m.Seq, sent)
		}
	}
}
