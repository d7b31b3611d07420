package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/client"
	"github.com/parley-chat/parley/pkg/protocol"
)

// streamN is how many messages the SSE and long-poll tests publish.
const streamN = 300

// publish sends n messages to room through the load balancer with the Go
// SDK over WebSocket, one every 10 ms (about 3 s in all), calling pause
// before message pauseAt (0: never) and going on when it returns. It
// returns when all are acknowledged; an error fails the test.
func publish(t *testing.T, ctx context.Context, c *cluster, room string, n, pauseAt int, pause func()) <-chan struct{} {
	t.Helper()
	cl, err := client.Dial(ctx, client.Config{URL: c.url, User: "publisher", RetryDial: true})
	if err != nil {
		t.Fatalf("publisher: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer cl.Close()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 1; i <= n; i++ {
			if i == pauseAt && pause != nil {
				pause()
			}
			if _, err := cl.Send(ctx, room, fmt.Sprintf("m%d", i)); err != nil {
				t.Errorf("publish m%d: %v", i, err)
				return
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
		}
	}()
	return done
}

// seqCheck counts what a client read of a room's stream.
type seqCheck struct {
	last       int64
	dups, gaps int
}

// see records seq s.
func (sc *seqCheck) see(s int64) {
	switch {
	case s <= sc.last:
		sc.dups++
		return
	case s > sc.last+1:
		sc.gaps++
	}
	sc.last = s
}

// An SSE client reading through HAProxy whose gateway is killed -9
// mid-stream reconnects with Last-Event-ID, on another gateway, and ends
// with every message exactly once, in order.
func TestSSESurvivesKill(t *testing.T) {
	c := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const room = "sse-kill"
	hc := &http.Client{}
	lastID := ""
	open := func() (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+c.lb.Addr+"/v1/rooms/"+room+"/events?user=reader", nil)
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := hc.Do(req)
		if err == nil && resp.StatusCode != 200 {
			resp.Body.Close()
			return nil, fmt.Errorf("status %d", resp.StatusCode)
		}
		return resp, err
	}
	var sc seqCheck
	var killedAt time.Time
	var resumeAfter time.Duration
	streams, killedStream, killed := 0, 0, ""
	var pubDone <-chan struct{}
	for sc.last < streamN {
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d messages before the deadline", sc.last, streamN)
		}
		resp, err := open()
		if err != nil {
			t.Logf("reconnect: %v", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		streams++
		node := resp.Header.Get("X-Parley-Node")
		sr := bufio.NewScanner(resp.Body)
		id, typ := "", ""
		for sr.Scan() {
			line := sr.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				typ = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: ") && typ == "joined" && pubDone == nil:
				pubDone = publish(t, ctx, c, room, streamN, 0, nil)
			case strings.HasPrefix(line, "data: ") && typ == "message":
				var m protocol.Message
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &m); err != nil {
					t.Fatalf("message %q: %v", line, err)
				}
				sc.see(m.Seq)
				if !killedAt.IsZero() && resumeAfter == 0 && streams > killedStream {
					resumeAfter = time.Since(killedAt)
				}
				if sc.last == 100 && killed == "" {
					killed = node
					killedAt, killedStream = time.Now(), streams
					c.gws[node].Kill()
				}
			case line == "":
				if id != "" {
					lastID = id
				}
				id, typ = "", ""
			}
			if sc.last >= streamN {
				break
			}
		}
		resp.Body.Close()
	}
	<-pubDone
	if killed == "" {
		t.Fatal("no gateway was killed")
	}
	if sc.last != streamN || sc.dups != 0 || sc.gaps != 0 {
		t.Fatalf("read up to seq %d of %d: %d duplicates, %d gaps", sc.last, streamN, sc.dups, sc.gaps)
	}
	t.Logf("SSE through haproxy, %s killed -9 after seq 100: %d streams, first message on the new stream %v after the kill; seqs 1..%d, duplicates %d, gaps %d",
		killed, streams, resumeAfter.Round(time.Millisecond), streamN, sc.dups, sc.gaps)
}
