package webhook

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

// The Standard Webhooks specification's published test vector.
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func vectorHeader(sig string, ts int64) http.Header {
	h := http.Header{}
	h.Set(HeaderID, vectorID)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	h.Set(HeaderSignature, sig)
	return h
}

func TestSignMatchesTheSpecVector(t *testing.T) {
	s, err := ParseSecret(vectorSecret)
	if err != nil {
		t.Fatal(err)
	}
	if got := Sign(s, vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorBody)); got != vectorSignature {
		t.Fatalf("Sign = %s, want %s", got, vectorSignature)
	}
	if s.String() != vectorSecret {
		t.Fatalf("String = %s", s)
	}
}

func TestVerify(t *testing.T) {
	s, _ := ParseSecret(vectorSecret)
	other, _ := ParseSecret("whsec_" + "c2VjcmV0LW9mLWFub3RoZXItZW5kcG9pbnQ=")
	at := time.Unix(vectorTimestamp, 0)
	body := []byte(vectorBody)
	cases := []struct {
		name   string
		secret Secret
		header http.Header
		body   []byte
		now    time.Time
		want   error
	}{
		{"the vector", s, vectorHeader(vectorSignature, vectorTimestamp), body, at, nil},
		{"one of several signatures", s, vectorHeader("v1,bm9wZQ== "+vectorSignature+" v2,xyz", vectorTimestamp), body, at, nil},
		{"4m59s late", s, vectorHeader(vectorSignature, vectorTimestamp), body, at.Add(299 * time.Second), nil},
		{"wrong secret", other, vectorHeader(vectorSignature, vectorTimestamp), body, at, ErrSignature},
		{"tampered body", s, vectorHeader(vectorSignature, vectorTimestamp), []byte(`{"test": 2432232315}`), at, ErrSignature},
		{"old timestamp", s, vectorHeader(vectorSignature, vectorTimestamp), body, at.Add(6 * time.Minute), ErrTimestamp},
		{"future timestamp", s, vectorHeader(vectorSignature, vectorTimestamp), body, at.Add(-6 * time.Minute), ErrTimestamp},
		{"timestamp changed", s, vectorHeader(vectorSignature, vectorTimestamp+1), body, at, ErrSignature},
		{"no signature", s, vectorHeader("", vectorTimestamp), body, at, ErrMissingHeaders},
		{"not v1", s, vectorHeader("v2"+vectorSignature[2:], vectorTimestamp), body, at, ErrSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := verifyAt(c.secret, c.header, c.body, 0, c.now); !errors.Is(err, c.want) {
				t.Fatalf("verify = %v, want %v", err, c.want)
			}
		})
	}
}

func TestParseSecret(t *testing.T) {
	for _, bad := range []string{"", "whsec_", "whsec_not base64!", "whsec_c2hvcnQ="} {
		if _, err := ParseSecret(bad); err == nil {
			t.Errorf("ParseSecret(%q) accepted it", bad)
		}
	}
	if _, err := ParseSecret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"); err != nil {
		t.Errorf("a secret without its prefix: %v", err)
	}
}

func TestBackoffBounds(t *testing.T) {
	b := Backoff{Base: time.Second, Max: time.Minute}
	ceilings := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute, time.Minute}
	for n, want := range ceilings {
		if got := b.Ceiling(n); got != want {
			t.Errorf("Ceiling(%d) = %v, want %v", n, got, want)
		}
		if got := b.Delay(n, func() float64 { return 0 }); got != 0 {
			t.Errorf("Delay(%d) with rand 0 = %v, want 0", n, got)
		}
		if got := b.Delay(n, func() float64 { return 0.5 }); got != want/2 {
			t.Errorf("Delay(%d) with rand 0.5 = %v, want %v", n, got, want/2)
		}
		if got := b.Delay(n, func() float64 { return 0.999999 }); got >= want || got < want*99/100 {
			t.Errorf("Delay(%d) with rand ~1 = %v, want just under %v", n, got, want)
		}
	}
	if got := b.Ceiling(1000); got != time.Minute {
		t.Errorf("Ceiling(1000) = %v: the doubling must stop at Max", got)
	}
	for range 1000 {
		if d := b.Delay(3, nil); d < 0 || d >= 8*time.Second {
			t.Fatalf("Delay(3) = %v, outside [0, 8s)", d)
		}
	}
	if got := (Backoff{}).Ceiling(0); got != time.Second {
		t.Errorf("the default base is %v", got)
	}
}

func TestSend(t *testing.T) {
	s, _ := ParseSecret(vectorSecret)
	status := http.StatusNoContent
	var got http.Header
	var gotBody []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		gotBody, _ = io.ReadAll(r.Body)
		w.WriteHeader(status)
	}))
	defer srv.Close()
	snd := &Sender{URL: srv.URL, Secret: s, Client: srv.Client()}
	body := []byte(`{"type":"message.offline"}`)
	if err := snd.Send(context.Background(), "message.offline/r/e/1/bob", time.Now(), body); err != nil {
		t.Fatal(err)
	}
	if string(gotBody) != string(body) || got.Get("Content-Type") != "application/json" || got.Get(HeaderID) != "message.offline/r/e/1/bob" {
		t.Fatalf("sent %s with %v", gotBody, got)
	}
	if err := Verify(s, got, gotBody, 0); err != nil {
		t.Fatalf("the receiver cannot verify what was sent: %v", err)
	}
	status = http.StatusInternalServerError
	err := snd.Send(context.Background(), "x", time.Now(), body)
	var se *StatusError
	if !errors.As(err, &se) || se.Status != 500 {
		t.Fatalf("Send to a 500 = %v, want a StatusError 500", err)
	}
}
