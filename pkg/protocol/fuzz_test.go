package protocol

import (
	"errors"
	"testing"
)

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"type":"hello","user":"alice","device":"phone"}`,
		`{"type":"join","room":"general","since":{"epoch":"e1","seq":41}}`,
		`{"type":"send","room":"general","id":"c-123","body":"hi"}`,
		`{"type":"history","room":"general","before":58,"limit":50}`,
		`{"type":"ping"}`, `{`, `[]`, `null`, "\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := Decode(data)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("error %v does not wrap ErrBadFrame", err)
			}
			return
		}
		if err := fr.Validate(); err != nil {
			t.Fatalf("decoded frame fails Validate: %v", err)
		}
		// A valid frame re-encodes and decodes to the same type and room.
		b, err := Encode(fr)
		if err != nil {
			t.Fatal(err)
		}
		fr2, err := Decode(b)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", b, err)
		}
		if fr2.Type != fr.Type || fr2.Room != fr.Room || fr2.ID != fr.ID || fr2.Body != fr.Body {
			t.Fatalf("round trip changed the frame: %+v vs %+v", fr, fr2)
		}
	})
}

func FuzzDecodeMessage(f *testing.F) {
	f.Add([]byte(`{"type":"message","room":"g","seq":1,"epoch":"e","id":"a","from":"u","ts":"2026-11-22T10:00:00.000Z","body":"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeMessage(data)
		if err != nil {
			return
		}
		if m.Seq <= 0 || m.Room == "" {
			t.Fatalf("accepted an envelope without seq or room: %+v", m)
		}
	})
}
