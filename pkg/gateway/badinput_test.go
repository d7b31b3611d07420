package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/parley-chat/parley/pkg/gateway"
	"github.com/parley-chat/parley/pkg/protocol"
)

// Invariant 8: every bad input gets an error frame or a close code with a
// reason, and every other connection carries on.
func TestInvariant8_BadInput(t *testing.T) {
	secret := []byte("test-secret")
	c := newCluster(t, 1, func(cfg *gateway.Config) {
		cfg.JWTSecret = secret
		cfg.HelloTimeout = 500 * time.Millisecond
	})
	n := c.gws[0]
	// A bystander that must keep working through every case.
	by := login(t, n, "bystander", "phone")
	by.join("general", nil)
	var posted int
	bystanderOK := func(t *testing.T) {
		t.Helper()
		posted++
		ack, msgs := by.post("general", "by-"+strings.Repeat("x", posted), "still here")
		if len(msgs) == 0 {
			msgs = by.messages(1)
		}
		if msgs[0].Seq != ack.Seq {
			t.Fatalf("bystander's own message %+v does not match ack %+v", msgs[0], ack)
		}
	}

	errorCase := func(name, frame, code, mention string) {
		t.Run(name, func(t *testing.T) {
			cl := login(t, n, "alice", "phone")
			cl.sendRaw([]byte(frame))
			f := cl.expect("error")
			if f.Code != code || !strings.Contains(f.Message, mention) {
				t.Fatalf("error = %+v, want code %s mentioning %q", f, code, mention)
			}
			// The connection still works.
			cl.send(protocol.Frame{Type: "ping", Ref: "p"})
			if p := cl.expect("pong"); p.Ref != "p" {
				t.Fatalf("pong %+v", p)
			}
			bystanderOK(t)
		})
	}
	errorCase("MalformedJSON", `{"type":"send",`, protocol.CodeBadRequest, "malformed JSON")
	errorCase("UnknownType", `{"type":"dance","ref":"r1"}`, protocol.CodeBadRequest, `unknown frame type "dance"`)
	errorCase("MissingField", `{"type":"send","room":"general","body":"x"}`, protocol.CodeBadRequest, `needs "id"`)
	errorCase("InvalidUTF8", "{\"type\":\"send\",\"room\":\"general\",\"id\":\"a\",\"body\":\"\xff\xfe\"}", protocol.CodeBadRequest, "UTF-8")
	errorCase("RoomNameTooLong", `{"type":"join","room":"`+strings.Repeat("r", 65)+`"}`, protocol.CodeBadRequest, "invalid room name")
	errorCase("RoomNameWithSpaces", `{"type":"join","room":"two words"}`, protocol.CodeBadRequest, "invalid room name")
	errorCase("OthersDirectRoom", `{"type":"join","room":"dm:bob:carol"}`, protocol.CodeForbidden, "direct room of bob and carol")
	errorCase("UnsortedDirectRoom", `{"type":"send","room":"dm:bob:alice","id":"x","body":"x"}`, protocol.CodeBadRequest, "sorted")
	errorCase("OthersDirectHistory", `{"type":"history","room":"dm:bob:carol"}`, protocol.CodeForbidden, "direct room of bob and carol")
	errorCase("BodyTooLarge", `{"type":"send","room":"general","id":"big","body":"`+strings.Repeat("b", 5000)+`"}`, protocol.CodeTooLarge, "limit is 4096")

	t.Run("ErrorCarriesRef", func(t *testing.T) {
		cl := login(t, n, "alice", "phone")
		cl.sendRaw([]byte(`{"type":"join","ref":"mine","room":"bad room"}`))
		if f := cl.expect("error"); f.Ref != "mine" {
			t.Fatalf("error %+v does not echo ref", f)
		}
	})

	t.Run("FrameOverLimitCloses1009", func(t *testing.T) {
		cl := login(t, n, "alice", "phone")
		cl.sendRaw([]byte(`{"type":"send","room":"general","id":"x","body":"` + strings.Repeat("z", 70<<10) + `"}`))
		if code, _ := cl.closeStatus(); code != websocket.StatusMessageTooBig {
			t.Fatalf("oversized frame closed with %d, want 1009", code)
		}
		bystanderOK(t)
	})

	t.Run("SendBeforeHello", func(t *testing.T) {
		cl := connect(t, n)
		cl.send(protocol.Frame{Type: "send", Ref: "early", Room: "general", ID: "e1", Body: "x"})
		if f := cl.expect("error"); f.Code != protocol.CodeUnauthorized || f.Ref != "early" {
			t.Fatalf("send before hello = %+v, want unauthorized", f)
		}
		bystanderOK(t)
	})

	t.Run("NoHelloCloses1008", func(t *testing.T) {
		cl := connect(t, n)
		code, reason := cl.closeStatus()
		if code != websocket.StatusPolicyViolation || !strings.Contains(reason, "no hello") {
			t.Fatalf("silent client closed with %d %q, want 1008 no hello", code, reason)
		}
	})

	token := func(sub string, exp time.Time, key []byte) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: sub, ExpiresAt: jwt.NewNumericDate(exp)}).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	helloCase := func(name string, hello protocol.Frame, mention string) {
		t.Run(name, func(t *testing.T) {
			cl := connect(t, n)
			cl.send(hello)
			if f := cl.expect("error"); f.Code != protocol.CodeUnauthorized {
				t.Fatalf("bad hello answered %+v", f)
			}
			code, reason := cl.closeStatus()
			if code != websocket.StatusPolicyViolation || !strings.Contains(reason, mention) {
				t.Fatalf("bad hello closed with %d %q, want 1008 mentioning %q", code, reason, mention)
			}
			bystanderOK(t)
		})
	}
	helloCase("ExpiredToken", protocol.Frame{Type: "hello", Token: token("alice", time.Now().Add(-time.Minute), secret)}, "expired")
	helloCase("WrongKeyToken", protocol.Frame{Type: "hello", Token: token("alice", time.Now().Add(time.Hour), []byte("other"))}, "signature")
	helloCase("GarbageToken", protocol.Frame{Type: "hello", Token: "not.a.jwt"}, "invalid token")

	t.Run("ValidToken", func(t *testing.T) {
		cl := connect(t, n)
		cl.send(protocol.Frame{Type: "hello", Token: token("carol", time.Now().Add(time.Hour), secret), Device: "web"})
		if w := cl.expect("welcome"); w.User != "carol" || w.Device != "web" {
			t.Fatalf("welcome %+v", w)
		}
	})

	t.Run("FloodIsLimitedThenClosed", func(t *testing.T) {
		cl := login(t, n, "flooder", "bot")
		for range 200 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := cl.ws.Write(ctx, websocket.MessageText, []byte(`{"type":"ping"}`))
			cancel()
			if err != nil {
				break // closed for flooding
			}
		}
		var pongs, limited int
		for {
			f, err := cl.tryNext(5 * time.Second)
			if err != nil {
				break
			}
			switch {
			case f.Type == "pong":
				pongs++
			case f.Type == "error" && f.Code == protocol.CodeRateLimited:
				limited++
			default:
				t.Fatalf("flood got %+v", f)
			}
		}
		if code, reason := cl.closeStatus(); code != websocket.StatusPolicyViolation || !strings.Contains(reason, "flood") {
			t.Fatalf("flooder closed with %d %q, want 1008 flood", code, reason)
		}
		if pongs < 40 || pongs > 60 || limited < 40 {
			t.Fatalf("flood: %d pongs, %d rate_limited errors", pongs, limited)
		}
		bystanderOK(t)
	})

	t.Run("OriginNotAllowed", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h := map[string][]string{"Origin": {"http://evil.example"}}
		_, resp, err := websocket.Dial(ctx, n.wsURL("/ws"), &websocket.DialOptions{HTTPHeader: h, Subprotocols: []string{protocol.Subprotocol}})
		if err == nil || resp == nil || resp.StatusCode != 403 {
			t.Fatalf("foreign origin: err %v resp %v, want 403", err, resp)
		}
	})
}

func TestAllowedOrigins(t *testing.T) {
	c := newCluster(t, 1, func(cfg *gateway.Config) { cfg.AllowedOrigins = []string{"*.example.com"} })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h := map[string][]string{"Origin": {"https://chat.example.com"}}
	ws, _, err := websocket.Dial(ctx, c.gws[0].wsURL("/ws"), &websocket.DialOptions{HTTPHeader: h, Subprotocols: []string{protocol.Subprotocol}})
	if err != nil {
		t.Fatalf("allowed origin refused: %v", err)
	}
	ws.CloseNow()
}
