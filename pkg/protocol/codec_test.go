package protocol

import (
	"errors"
	"strings"
	"testing"
)

func TestDecodeValid(t *testing.T) {
	cases := map[string]Frame{
		`{"type":"hello","user":"alice","device":"phone"}`:                     {Type: TypeHello, User: "alice", Device: "phone"},
		`{"type":"hello","ref":"h1"}`:                                          {Type: TypeHello, Ref: "h1"},
		`{"type":"refresh","ref":"r1","token":"t"}`:                            {Type: TypeRefresh, Ref: "r1", Token: "t"},
		`{"type":"join","room":"general","since":{"epoch":"e1","seq":41}}`:     {Type: TypeJoin, Room: "general", Since: &Since{Epoch: "e1", Seq: 41}},
		`{"type":"send","room":"general","id":"c-123","body":"hi","ref":"r1"}`: {Type: TypeSend, Room: "general", ID: "c-123", Body: "hi", Ref: "r1"},
		`{"type":"history","room":"general","before":58,"limit":50}`:           {Type: TypeHistory, Room: "general", Before: 58, Limit: 50},
		`{"type":"ping"}`: {Type: TypePing},
	}
	for in, want := range cases {
		f, err := Decode([]byte(in))
		if err != nil {
			t.Fatalf("Decode(%s): %v", in, err)
		}
		if f.Type != want.Type || f.Room != want.Room || f.ID != want.ID || f.Body != want.Body || f.User != want.User || f.Before != want.Before || f.Limit != want.Limit || f.Ref != want.Ref {
			t.Errorf("Decode(%s) = %+v, want %+v", in, f, want)
		}
		if (want.Since == nil) != (f.Since == nil) || (want.Since != nil && *want.Since != *f.Since) {
			t.Errorf("Decode(%s) since = %+v, want %+v", in, f.Since, want.Since)
		}
	}
}

func TestDecodeInvalid(t *testing.T) {
	cases := map[string]string{
		`{"type":"join","room":`:             "malformed JSON",
		`not json`:                           "malformed JSON",
		`{"type":"dance"}`:                   `unknown frame type "dance"`,
		`{"room":"x"}`:                       `missing "type"`,
		`{"type":"join"}`:                    `missing "room"`,
		`{"type":"join","room":"has space"}`: "invalid room name",
		`{"type":"join","room":"` + strings.Repeat("a", 65) + `"}`: "invalid room name",
		`{"type":"send","room":"general","body":"x"}`:              `send needs "id"`,
		`{"type":"send","room":"g","id":"a b","body":"x"}`:         `"id" must be`,
		"{\"type\":\"ping\",\"x\":\"\xff\"}":                       "not valid UTF-8",
		`{"type":"ping"} {"type":"ping"}`:                          "more than one value",
		`{"type":"refresh","ref":"r1"}`:                            `refresh needs "token"`,
		`{"type":"join","room":"g","since":{"epoch":"","seq":3}}`:  `needs the "epoch"`,
		`{"type":"join","room":"g","since":{"seq":3}}`:             `needs the "epoch"`,
	}
	for in, want := range cases {
		_, err := Decode([]byte(in))
		if err == nil {
			t.Errorf("Decode(%q): no error, want %q", in, want)
			continue
		}
		if !errors.Is(err, ErrBadFrame) {
			t.Errorf("Decode(%q): error %v does not wrap ErrBadFrame", in, err)
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Decode(%q) = %q, want it to mention %q", in, err, want)
		}
	}
}

func TestValidRoom(t *testing.T) {
	for _, ok := range []string{"a", "general", "dm:alice:bob", "A.b_c-d:9", strings.Repeat("x", 64)} {
		if !ValidRoom(ok) {
			t.Errorf("ValidRoom(%q) = false", ok)
		}
	}
	for _, bad := range []string{"", "-a", ".a", "a b", "é", strings.Repeat("x", 65), "a/b"} {
		if ValidRoom(bad) {
			t.Errorf("ValidRoom(%q) = true", bad)
		}
	}
}

func TestEncodeMessageRoundTrip(t *testing.T) {
	m := &Message{Type: TypeMessage, Room: "general", Seq: 58, Epoch: "e1", ID: "c-123", From: "alice", Device: "phone", TS: "2026-11-22T10:00:00.000Z", Body: "hi <b>"}
	b, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	if *got != *m {
		t.Fatalf("round trip: got %+v want %+v", got, m)
	}
}

func TestFormatTime(t *testing.T) {
	tm, err := ParseTime("2026-11-22T10:00:00.123Z")
	if err != nil {
		t.Fatal(err)
	}
	if s := FormatTime(tm); s != "2026-11-22T10:00:00.123Z" {
		t.Fatalf("FormatTime = %s", s)
	}
}

func TestDecodeTyping(t *testing.T) {
	f, err := Decode([]byte(`{"type":"typing","room":"general"}`))
	if err != nil || f.Type != TypeTyping || f.Room != "general" {
		t.Fatalf("Decode typing = %+v, %v", f, err)
	}
	for _, in := range []string{`{"type":"typing"}`, `{"type":"typing","room":"bad room"}`} {
		if _, err := Decode([]byte(in)); err == nil {
			t.Errorf("Decode(%s): no error, want bad_request", in)
		}
	}
}

func TestDecodeRead(t *testing.T) {
	f, err := Decode([]byte(`{"type":"read","room":"general","epoch":"e1","seq":40,"ref":"r1"}`))
	if err != nil || f.Type != TypeRead || f.Seq != 40 || f.Epoch != "e1" {
		t.Fatalf("Decode read = %+v, %v", f, err)
	}
	for _, in := range []string{`{"type":"read","seq":1,"epoch":"e"}`, `{"type":"read","room":"r","seq":-1}`, `{"type":"read","room":"r","seq":3}`} {
		if _, err := Decode([]byte(in)); err == nil {
			t.Errorf("Decode(%s): no error, want bad_request", in)
		}
	}
}

func TestDirectUsers(t *testing.T) {
	cases := map[string][2]string{
		"dm:alice:bob":   {"alice", "bob"},
		"dm:a.b:c-d":     {"a.b", "c-d"},
		"dm:bob:alice":   {}, // not sorted
		"dm:alice:alice": {},
		"dm:alice":       {},
		"dm:a:b:c":       {}, // ':' in a user
		"general":        {},
		"dm::bob":        {},
	}
	for name, want := range cases {
		a, b, ok := DirectUsers(name)
		if ok != (want[0] != "") || a != want[0] || b != want[1] {
			t.Errorf("DirectUsers(%q) = %q, %q, %v; want %q", name, a, b, ok, want)
		}
	}
	if got := DirectRoomOf("bob", "alice"); got != "dm:alice:bob" {
		t.Errorf("DirectRoomOf(bob, alice) = %q", got)
	}
}

func TestDecodeRoomRequests(t *testing.T) {
	good := []string{
		`{"type":"create","room":"team","kind":"private"}`,
		`{"type":"create","room":"team"}`,
		`{"type":"invite","room":"team","user":"bob"}`,
		`{"type":"rooms","after":"general","limit":10}`,
		`{"type":"rooms"}`,
	}
	for _, in := range good {
		if _, err := Decode([]byte(in)); err != nil {
			t.Errorf("Decode(%s): %v", in, err)
		}
	}
	bad := []string{
		`{"type":"create","room":"team","kind":"secret"}`,
		`{"type":"create"}`,
		`{"type":"invite","room":"team"}`,
		`{"type":"invite","room":"team","user":"no one"}`,
		`{"type":"rooms","limit":-1}`,
	}
	for _, in := range bad {
		if _, err := Decode([]byte(in)); err == nil {
			t.Errorf("Decode(%s): no error, want bad_request", in)
		}
	}
}

func TestDecodeSyncAndPresence(t *testing.T) {
	for _, in := range []string{`{"type":"sync","ref":"y1"}`, `{"type":"presence","room":"general"}`} {
		if _, err := Decode([]byte(in)); err != nil {
			t.Errorf("Decode(%s): %v", in, err)
		}
	}
	if _, err := Decode([]byte(`{"type":"presence"}`)); err == nil {
		t.Error(`Decode({"type":"presence"}): no error, want bad_request (no room)`)
	}
}
