package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/protocol"
)

// waiting reports whether gateway addr holds a waiting long-poll, read
// from its own /metrics (haproxy keeps /metrics in).
func waiting(addr string) bool {
	hc := http.Client{Timeout: time.Second}
	resp, err := hc.Get("http://" + addr + "/metrics")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "parley_polls_waiting{") {
			return !strings.HasSuffix(l, " 0")
		}
	}
	return false
}

// A long-poll client looping through HAProxy (after=next, wait=5s) whose
// waiting poll's gateway is killed -9 retries the same after, on another
// gateway, and ends with every message exactly once, in order.
func TestLongPollSurvivesKill(t *testing.T) {
	c := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const room = "poll-kill"
	hc := &http.Client{Timeout: 20 * time.Second}
	get := func(after string) (answer struct {
		Messages []protocol.Message `json:"messages"`
		Next     string             `json:"next"`
	}, err error) {
		u := "http://" + c.lb.Addr + "/v1/rooms/" + room + "/messages?user=reader&wait=5s&after=" + url.QueryEscape(after)
		req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
		resp, err := hc.Do(req)
		if err != nil {
			return answer, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return answer, fmt.Errorf("status %d: %s", resp.StatusCode, b)
		}
		return answer, json.Unmarshal(b, &answer)
	}

	// The publisher stops before message 151 until the gateway holding
	// the poll that waits for it is killed.
	killed := make(chan string, 1)
	var killedAt time.Time
	pause := func() {
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			for node, g := range c.gws {
				if waiting(g.Addr) {
					killedAt = time.Now()
					g.Kill()
					killed <- node
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("no gateway held a waiting poll within 20s")
		killed <- ""
	}
	var sc seqCheck
	// A poll cut by the kill is retried by haproxy itself (retry-on
	// empty-response) or, when it answers an error, by the loop.
	polls, failed := 0, 0
	var resumeAfter time.Duration
	var pubDone <-chan struct{}
	after := "" // the room is empty: its start
	for sc.last < streamN {
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d messages before the deadline", sc.last, streamN)
		}
		if polls == 1 && pubDone == nil {
			pubDone = publish(t, ctx, c, room, streamN, 151, pause)
		}
		polls++
		ans, err := get(after)
		if err != nil {
			failed++ // retried with the same after
			t.Logf("poll %d failed: %v", polls, err)
			continue
		}
		if !killedAt.IsZero() && resumeAfter == 0 {
			resumeAfter = time.Since(killedAt)
		}
		for _, m := range ans.Messages {
			sc.see(m.Seq)
		}
		after = ans.Next
	}
	<-pubDone
	node := <-killed
	if sc.last != streamN || sc.dups != 0 || sc.gaps != 0 || node == "" {
		t.Fatalf("read up to seq %d of %d: %d duplicates, %d gaps; killed %q, failed polls %d", sc.last, streamN, sc.dups, sc.gaps, node, failed)
	}
	t.Logf("long-poll through haproxy, %s killed -9 holding a wait: %d polls (%d failed and retried by the client; haproxy retries a cut one itself), next answer %v after the kill; seqs 1..%d, duplicates %d, gaps %d",
		node, polls, failed, resumeAfter.Round(time.Millisecond), streamN, sc.dups, sc.gaps)
}
