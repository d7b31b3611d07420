package loadgen

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/broker"
)

// frameCorpus holds the frames the gateway sends and the shapes the fast
// scanner must leave to encoding/json.
func frameCorpus() []string {
	head, tail := broker.EnvelopeParts(broker.Publication{Room: "room-7", ID: "m1", From: "bench-3", Device: "bench", TS: "2026-11-22T04:00:00.000Z", Body: "t=1795000000000000000;xxxx"})
	msg := string(broker.Assemble(head, 42, "e1a2", tail))
	return []string{
		msg,
		`{"type":"ack","ref":"s","id":"m1","room":"r","seq":7,"ts":"2026-11-22T04:00:00Z"}`,
		`{"type":"joined","ref":"j","room":"r","epoch":"e1","seq":0,"first":1,"recovered":false}`,
		`{"type":"joined","room":"r","epoch":"e2","seq":9,"recovered":true}`,
		`{"type":"error","ref":"s","code":"rate_limited","message":"more than 20 frames per second; frame dropped"}`,
		`{"type":"welcome","ref":"h","user":"u","device":"d","node":"gw-1"}`,
		` { "type" : "message" , "seq" : -3 , "recovered" : null } `,
		`{}`,
		// Left to encoding/json:
		`{"type":"message","body":"a \"quoted\" \u00e9 line\n"}`,
		`{"type":"history","room":"r","messages":[{"seq":1}]}`,
		`{"Type":"message","SEQ":5}`,
		`{"type":"message","seq":1.5}`,
		`{"type":"message","seq":"7"}`,
		`{"type":"message","seq":01}`,
		`{"type":"message","body":"é"}`,
		`{"type":"message","seq":true}`,
		`{"type":"message",}`,
		`{"type":"message"} x`,
		`{"type":"message"`,
		`[1,2]`,
		``,
		`{"seq":99999999999999999999}`,
	}
}

func TestDecodeFrameMatchesEncodingJSON(t *testing.T) {
	fast := 0
	for _, in := range frameCorpus() {
		var want inFrame
		wantErr := json.Unmarshal([]byte(in), &want)
		var got inFrame
		err := decodeFrame([]byte(in), &got)
		if (err != nil) != (wantErr != nil) {
			t.Errorf("%s: decodeFrame error %v, encoding/json error %v", in, err, wantErr)
			continue
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", in, got, want)
		}
		var scanned inFrame
		if scanFrame([]byte(in), &scanned) {
			fast++
		}
	}
	// The gateway's own frames (the first eight) take the fast path.
	if fast != 8 {
		t.Errorf("%d frames took the fast path, want the 8 plain ones", fast)
	}
}

func FuzzDecodeFrame(f *testing.F) {
	for _, in := range frameCorpus() {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var want inFrame
		wantErr := json.Unmarshal(in, &want)
		var got inFrame
		err := decodeFrame(in, &got)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("%q: decodeFrame error %v, encoding/json error %v", in, err, wantErr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\n got %+v\nwant %+v", in, got, want)
		}
	})
}

func BenchmarkDecodeFrame(b *testing.B) {
	head, tail := broker.EnvelopeParts(broker.Publication{Room: "room-7", ID: "bench-3-1234", From: "bench-3", Device: "bench", TS: "2026-11-22T04:00:00.000Z", Body: EncodeBody(time.Unix(1795000000, 0), 64)})
	msg := broker.Assemble(head, 42, "e1a2b3c4", tail)
	b.Run("scan", func(b *testing.B) {
		var f inFrame
		for b.Loop() {
			_ = decodeFrame(msg, &f)
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		var f inFrame
		for b.Loop() {
			f = inFrame{}
			_ = json.Unmarshal(msg, &f)
		}
	})
}
