package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/pkg/client"
	"github.com/parley-chat/parley/pkg/protocol"
)

// device is one raw protocol-v1 connection of a user: the story asserts on
// the exact frames, in the order they arrive, so no SDK sits in between.
type device struct {
	t    *testing.T
	name string // "alice/phone", for failure messages
	ws   *websocket.Conn
	refs int
}

// dialDevice connects to addr (a gateway or haproxy), sends hello as user
// and device and returns the connection with its welcome. helloRTT is the
// time from writing hello to reading welcome.
func dialDevice(t *testing.T, ctx context.Context, addr, user, dev string) (d *device, welcome protocol.Frame, helloRTT time.Duration) {
	t.Helper()
	ws, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws", &websocket.DialOptions{Subprotocols: []string{protocol.Subprotocol}})
	if err != nil {
		t.Fatalf("%s/%s: dial %s: %v", user, dev, addr, err)
	}
	t.Cleanup(func() { _ = ws.CloseNow() })
	d = &device{t: t, name: user + "/" + dev, ws: ws}
	start := time.Now()
	d.write(ctx, protocol.Frame{Type: protocol.TypeHello, Ref: "hello", User: user, Device: dev})
	welcome = d.next(ctx)
	helloRTT = time.Since(start)
	if welcome.Type != protocol.TypeWelcome || welcome.Ref != "hello" || welcome.User != user || welcome.Device != dev {
		t.Fatalf("%s: hello answered %+v, want its welcome", d.name, welcome)
	}
	return d, welcome, helloRTT
}

func (d *device) write(ctx context.Context, f protocol.Frame) {
	d.t.Helper()
	b, err := json.Marshal(f)
	if err != nil {
		d.t.Fatal(err)
	}
	if err := d.ws.Write(ctx, websocket.MessageText, b); err != nil {
		d.t.Fatalf("%s: write %s: %v", d.name, b, err)
	}
}

// request writes f with a fresh ref and returns that ref.
func (d *device) request(ctx context.Context, f protocol.Frame) string {
	d.t.Helper()
	d.refs++
	f.Ref = fmt.Sprintf("%s-%d", f.Type, d.refs)
	d.write(ctx, f)
	return f.Ref
}

// next returns the next frame the gateway sends, whatever it is.
func (d *device) next(ctx context.Context) protocol.Frame {
	d.t.Helper()
	_, b, err := d.ws.Read(ctx)
	if err != nil {
		d.t.Fatalf("%s: read: %v", d.name, err)
	}
	var f protocol.Frame
	if err := json.Unmarshal(b, &f); err != nil {
		d.t.Fatalf("%s: %v in %q", d.name, err, b)
	}
	return f
}

// nextMessage reads the next frame, which must be the message of room at
// seq in epoch with body.
func (d *device) nextMessage(ctx context.Context, room, epoch string, seq int64, body string) protocol.Frame {
	d.t.Helper()
	f := d.next(ctx)
	if f.Type != protocol.TypeMessage || f.Room != room || f.Epoch != epoch || f.Seq != seq || f.Body != body || f.From == "" {
		d.t.Fatalf("%s: got %+v, want message %s seq %d epoch %s body %q", d.name, f, room, seq, epoch, body)
	}
	return f
}

// nextError reads the next frame, which must be the error code for ref.
func (d *device) nextError(ctx context.Context, ref, code string) {
	d.t.Helper()
	if f := d.next(ctx); f.Type != protocol.TypeError || f.Ref != ref || f.Code != code {
		d.t.Fatalf("%s: got %+v, want error %s for %s", d.name, f, code, ref)
	}
}

// roomState returns the welcome's entry for room.
func roomState(t *testing.T, welcome protocol.Frame, room string) protocol.RoomState {
	t.Helper()
	if welcome.Rooms == nil {
		t.Fatalf("welcome of %s/%s has no rooms member: %+v", welcome.User, welcome.Device, welcome)
	}
	for _, rs := range *welcome.Rooms {
		if rs.Room == room {
			return rs
		}
	}
	t.Fatalf("welcome of %s/%s does not list %s: %+v", welcome.User, welcome.Device, room, *welcome.Rooms)
	return protocol.RoomState{}
}

func roomNames(welcome protocol.Frame) []string {
	var names []string
	if welcome.Rooms != nil {
		for _, rs := range *welcome.Rooms {
			names = append(names, rs.Room)
		}
	}
	return names
}

// TestPeopleStory is the multi-device story end to end, through haproxy
// and three gateway processes on one Redis: alice reads on her phone, puts
// it away, opens a laptop that has never connected and finds her unread
// counts in its welcome, catches up with one join, reads to the head, and
// her phone, back on another gateway, shows nothing unread; bob sees her
// online on two devices, then typing (her own phone does not), then
// offline within 30 s of her gateways being killed with SIGKILL; and the
// area's bad inputs are refused.
func TestPeopleStory(t *testing.T) {
	c := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Second)
	defer cancel()
	gw1, gw2, gw3 := c.gws["gw-1"], c.gws["gw-2"], c.gws["gw-3"]
	const general = "general"
	dm := protocol.DirectRoomOf("alice", "bob")
	if dm != "dm:alice:bob" {
		t.Fatalf("DirectRoomOf(alice, bob) = %q", dm)
	}

	// Bob posts through the load balancer with the SDK, which paces his
	// sends under the rate limit; each ack must carry the next seq.
	bob, err := client.Dial(ctx, client.Config{URL: c.url, User: "bob", Device: "desktop"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bob.Close() })
	var epoch string // #general's, from the first ack
	post := func(room, body string, wantSeq int64) {
		t.Helper()
		ack, err := bob.Send(ctx, room, body)
		if err != nil {
			t.Fatalf("bob send %q to %s: %v", body, room, err)
		}
		if ack.Seq != wantSeq || ack.Epoch == "" {
			t.Fatalf("bob send %q to %s: ack %+v, want seq %d", body, room, ack, wantSeq)
		}
		if room == general {
			if epoch == "" {
				epoch = ack.Epoch
			} else if ack.Epoch != epoch {
				t.Fatalf("#general's epoch changed from %s to %s", epoch, ack.Epoch)
			}
		}
	}
	body := func(seq int64) string { return fmt.Sprintf("bob in #general, %d", seq) }

	// 1. Alice's phone, on gw1, joins #general; bob posts 40 messages; the
	// phone reads to seq 40 and is put away.
	phone, welcome, _ := dialDevice(t, ctx, gw1.Addr, "alice", "phone")
	if welcome.Node != "gw-1" || welcome.Rooms == nil || len(*welcome.Rooms) != 0 {
		t.Fatalf("alice's first welcome: %+v, want gw-1 and no rooms", welcome)
	}
	ref := phone.request(ctx, protocol.Frame{Type: protocol.TypeJoin, Room: general})
	if f := phone.next(ctx); f.Type != protocol.TypeJoined || f.Ref != ref || f.Room != general || f.Seq != 0 {
		t.Fatalf("phone join of an empty #general: %+v", f)
	}
	for seq := int64(1); seq <= 40; seq++ {
		post(general, body(seq), seq)
	}
	for seq := int64(1); seq <= 40; seq++ {
		phone.nextMessage(ctx, general, epoch, seq, body(seq))
	}
	ref = phone.request(ctx, protocol.Frame{Type: protocol.TypeRead, Room: general, Epoch: epoch, Seq: 40})
	if f := phone.next(ctx); f.Type != protocol.TypeRead || f.Ref != ref || f.Room != general || f.Epoch != epoch || f.Seq != 40 || f.Unread != 0 {
		t.Fatalf("phone read to 40: %+v, want read seq 40 unread 0", f)
	}
	if err := phone.ws.Close(websocket.StatusNormalClosure, "put away"); err != nil {
		t.Fatalf("closing the phone: %v", err)
	}

	// 2. While it is away: 60 more in #general (head 100, so 60 unread
	// for alice) and bob's first direct message, which makes the room.
	for seq := int64(41); seq <= 100; seq++ {
		post(general, body(seq), seq)
		if seq == 70 {
			post(dm, "alice, a word?", 1)
		}
	}

	// 3. A laptop that has never connected, on gw3: its welcome lists both
	// rooms with their unread counts before it joins anything.
	dialStart := time.Now()
	laptop, welcome, helloRTT := dialDevice(t, ctx, gw3.Addr, "alice", "laptop")
	dialed := time.Since(dialStart)
	if welcome.Node != "gw-3" {
		t.Fatalf("laptop's welcome from %s, want gw-3", welcome.Node)
	}
	if names := roomNames(welcome); len(names) != 2 || names[0] != dm || names[1] != general {
		t.Fatalf("laptop's welcome lists rooms %v, want [%s %s] in name order", names, dm, general)
	}
	wantGeneral := protocol.RoomState{Room: general, Kind: "public", Epoch: epoch, Seq: 100, First: 1, Read: 40, Unread: 60}
	if got := roomState(t, welcome, general); got != wantGeneral {
		t.Fatalf("laptop's welcome: #general %+v, want %+v", got, wantGeneral)
	}
	if got := roomState(t, welcome, dm); got.Kind != "direct" || got.Epoch == "" || got.Seq != 1 || got.First != 1 || got.Read != 0 || got.Unread != 1 {
		t.Fatalf("laptop's welcome: %s %+v, want direct, seq 1, unread 1", dm, got)
	}
	t.Logf("laptop welcome (2 rooms, unread 60 + 1): hello→welcome %v, dial+upgrade+hello %v",
		helloRTT.Round(100*time.Microsecond), dialed.Round(100*time.Microsecond))

	// 4. One join from the read cursor brings exactly the 60 unread, in
	// order; the next frame after them is a sentinel published later.
	since := &protocol.Since{Epoch: epoch, Seq: 40}
	catchStart := time.Now()
	ref = laptop.request(ctx, protocol.Frame{Type: protocol.TypeJoin, Room: general, Since: since})
	f := laptop.next(ctx)
	if f.Type != protocol.TypeJoined || f.Ref != ref || f.Room != general || f.Epoch != epoch || f.Seq != 100 || f.First != 1 || f.Recovered == nil || !*f.Recovered {
		t.Fatalf("laptop join since 40: %+v, want joined head 100 recovered:true", f)
	}
	for seq := int64(41); seq <= 100; seq++ {
		if m := laptop.nextMessage(ctx, general, epoch, seq, body(seq)); m.From != "bob" || m.Device != "desktop" {
			t.Fatalf("laptop catch-up seq %d from %s/%s, want bob/desktop", seq, m.From, m.Device)
		}
	}
	catchUp := time.Since(catchStart)
	t.Logf("laptop catch-up: 60 messages (seqs 41..100) in %v from writing the join to reading seq 100", catchUp.Round(100*time.Microsecond))
	post(general, "sentinel after the catch-up", 101)
	laptop.nextMessage(ctx, general, epoch, 101, "sentinel after the catch-up")

	// 5. The laptop reads to the head (101: the sentinel is a message
	// too); the phone, back on gw2, shows nothing unread in #general.
	ref = laptop.request(ctx, protocol.Frame{Type: protocol.TypeRead, Room: general, Epoch: epoch, Seq: 101})
	if f := laptop.next(ctx); f.Type != protocol.TypeRead || f.Ref != ref || f.Epoch != epoch || f.Seq != 101 || f.Unread != 0 {
		t.Fatalf("laptop read to the head 101: %+v, want read seq 101 unread 0", f)
	}
	phone, welcome, _ = dialDevice(t, ctx, gw2.Addr, "alice", "phone")
	if welcome.Node != "gw-2" {
		t.Fatalf("phone's second welcome from %s, want gw-2", welcome.Node)
	}
	wantGeneral.Seq, wantGeneral.Read, wantGeneral.Unread = 101, 101, 0
	if got := roomState(t, welcome, general); got != wantGeneral {
		t.Fatalf("phone's welcome on gw2: #general %+v, want %+v", got, wantGeneral)
	}
	if got := roomState(t, welcome, dm); got.Unread != 1 {
		t.Fatalf("phone's welcome on gw2: %s %+v, want unread 1 (the laptop did not read it)", dm, got)
	}

	// 6. Bob joins #general (on gw1, which stays up) as alice's phone
	// does: alice's devices see him come online; he asks who is there and
	// sees alice on 2 devices (the phone on gw2, the laptop on gw3). Then
	// the laptop types in #general: bob sees it, alice's phone does not.
	head := &protocol.Since{Epoch: epoch, Seq: 101}
	bobDev, _, _ := dialDevice(t, ctx, gw1.Addr, "bob", "tablet")
	for _, d := range []*device{phone, bobDev} {
		ref := d.request(ctx, protocol.Frame{Type: protocol.TypeJoin, Room: general, Since: head})
		if f := d.next(ctx); f.Type != protocol.TypeJoined || f.Ref != ref || f.Seq != 101 || f.Recovered == nil || !*f.Recovered {
			t.Fatalf("%s join at the head: %+v", d.name, f)
		}
	}
	for _, d := range []*device{phone, laptop} {
		if f := d.next(ctx); f.Type != protocol.TypePresence || f.Ref != "" || f.User != "bob" || f.Devices != 1 || f.State != "online" {
			t.Fatalf("%s after bob joined: %+v, want bob online on 1 device", d.name, f)
		}
	}
	ref = bobDev.request(ctx, protocol.Frame{Type: protocol.TypePresence, Room: general})
	if f := bobDev.next(ctx); f.Type != protocol.TypePresence || f.Ref != ref || f.Count != 3 || f.Users == nil ||
		len(*f.Users) != 2 || (*f.Users)[0] != (protocol.PresentUser{User: "alice", Devices: 2}) || (*f.Users)[1] != (protocol.PresentUser{User: "bob", Devices: 1}) {
		t.Fatalf("bob asks who is in #general: %+v, want alice on 2 devices and bob on 1", f)
	}
	laptop.write(ctx, protocol.Frame{Type: protocol.TypeTyping, Room: general})
	if f := bobDev.next(ctx); f.Type != protocol.TypeTyping || f.Room != general || f.User != "alice" || f.Device != "laptop" {
		t.Fatalf("bob, after alice typed: %+v, want typing from alice/laptop", f)
	}
	// bob has seen the typing notice, so it is published; a message
	// published after it reaches every gateway after it. The phone's next
	// frame is that message: it got no typing notice.
	post(general, "sentinel after typing", 102)
	for _, d := range []*device{phone, bobDev, laptop} {
		d.nextMessage(ctx, general, epoch, 102, "sentinel after typing")
	}

	// 7. Bad inputs: a read beyond the head, a third user in the direct
	// room.
	ref = laptop.request(ctx, protocol.Frame{Type: protocol.TypeRead, Room: general, Epoch: epoch, Seq: 103})
	laptop.nextError(ctx, ref, protocol.CodeBadRequest)
	carol, welcome, _ := dialDevice(t, ctx, c.lb.Addr, "carol", "phone")
	if names := roomNames(welcome); len(names) != 0 {
		t.Fatalf("carol's welcome lists %v, want no rooms", names)
	}
	ref = carol.request(ctx, protocol.Frame{Type: protocol.TypeJoin, Room: dm})
	carol.nextError(ctx, ref, protocol.CodeForbidden)

	// 8. alice's gateways die (kill -9: no goodbye): gw1 notices their
	// beats stop, sweeps alice out of #general and tells bob she is
	// offline, within 30 s.
	gw2.Kill()
	gw3.Kill()
	killed := time.Now()
	wait, cancelWait := context.WithTimeout(ctx, 30*time.Second)
	defer cancelWait()
	if f := bobDev.next(wait); f.Type != protocol.TypePresence || f.Ref != "" || f.User != "alice" || f.Devices != 0 || f.State != "offline" {
		t.Fatalf("bob after alice's gateways were killed: %+v, want alice offline", f)
	}
	t.Logf("alice offline for bob %v after her gateways were killed with SIGKILL (--presence-ttl 20s, --presence-interval 5s)", time.Since(killed).Round(100*time.Millisecond))
}
