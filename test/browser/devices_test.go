package browser

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/parley-chat/parley/internal/browsertest"
	"github.com/parley-chat/parley/internal/proctest"
	"github.com/parley-chat/parley/internal/redistest"
)

// waitUnread waits until room's entry in p's room list shows n unread
// messages (n == 0: no count shown).
func (p *tab) waitUnread(room string, n int) {
	p.t.Helper()
	p.run(step, chromedp.PollFunction(`(room, n) => {
		const c = document.querySelector('#room-list li[data-room="' + room + '"] .count');
		if (!c) return false;
		return n === 0 ? c.hidden : !c.hidden && c.textContent === String(n);
	}`, nil, chromedp.WithPollingArgs(room, n), chromedp.WithPollingInterval(20*time.Millisecond)))
}

// roomList is p's room list: each entry's room and what it shows.
func (p *tab) roomList() []string {
	p.t.Helper()
	var out []string
	p.eval(`[...document.querySelectorAll('#room-list li')].map(li => li.dataset.room + '=' + li.querySelector('.room-name').textContent)`, &out)
	return out
}

// waitRoomListed waits until p's room list has room.
func (p *tab) waitRoomListed(room string) {
	p.t.Helper()
	p.run(step, chromedp.WaitReady(fmt.Sprintf(`#room-list li[data-room=%q]`, room)))
}

// waitOnline waits until p's online list (under the room title) shows want:
// the count, a colon and each entry's text, e.g. "2 online: alice (2), bob (you)".
func (p *tab) waitOnline(want string) {
	p.t.Helper()
	p.run(step, chromedp.PollFunction(`(want) => {
		if (document.getElementById('online').hidden) return false;
		const names = [...document.querySelectorAll('#online-list li')].map(li => li.textContent);
		return document.getElementById('online-count').textContent + ': ' + names.join(', ') === want;
	}`, nil, chromedp.WithPollingArgs(want), chromedp.WithPollingInterval(20*time.Millisecond)))
}

// TestChatPageDevices: one user on two devices (a laptop and a phone, each
// its own browser profile, on different gateways sharing Redis) and another
// user. The room list and unread counts come from the server's welcome;
// reading on one device clears the count on the other, live; a message's
// author name opens a direct room, which reaches the other user's devices
// live; a private room and an invite; the directory; who is online, with
// device counts, as her pages come, leave the room and close.
func TestChatPageDevices(t *testing.T) {
	r := redistest.Start(t, redistest.Options{})
	gw1 := proctest.StartGateway(t, proctest.GatewayOptions{Redis: r.URL(), Node: "gw-1"})
	gw2 := proctest.StartGateway(t, proctest.GatewayOptions{Redis: r.URL(), Node: "gw-2"})
	gw1.WaitReady(20 * time.Second)
	gw2.WaitReady(20 * time.Second)
	url1, url2 := "http://"+gw1.Addr+"/", "http://"+gw2.Addr+"/"

	phone := newTab(t, browsertest.Start(t), "alice-phone", true)
	bob := newTab(t, browsertest.Start(t), "bob", false)
	const room = "general"

	// alice's phone: lobby (the first room of a new user) and general.
	phone.open(url2+"?device=phone", "alice")
	phone.join(room)
	phone.selectRoom("lobby")
	bob.open(url1, "bob")
	bob.join(room)

	// bob talks while alice's laptop is closed; her phone counts.
	var conv []line
	for i := range 3 {
		body := fmt.Sprintf("bob says %d", i+1)
		conv = append(conv, line{bob.say(room, body), "bob", body})
	}
	phone.waitUnread(room, 3)

	// The laptop, a new browser: the rooms and the unread count come from
	// the welcome (#lobby keeps general closed for now).
	laptop := newTab(t, browsertest.Start(t), "alice-laptop", false)
	laptop.open(url1+"?device=laptop#lobby", "alice")
	laptop.waitUnread(room, 3)
	if got, want := strings.Join(laptop.roomList(), " "), "general=# general lobby=# lobby"; got != want {
		t.Fatalf("laptop room list %q, want %q", got, want)
	}
	var title string
	laptop.run(step, chromedp.Poll(`document.title === '(3) Parley'`, nil))
	t.Logf("wrote %s", laptop.screenshot("devices-laptop-unread.png"))

	// Opening the room shows the unread messages and reads them: the
	// phone's count goes without a reload.
	laptop.selectRoom(room)
	laptop.expect(room, conv)
	laptop.waitUnread(room, 0)
	phone.waitUnread(room, 0)
	phone.run(step, chromedp.Poll(`document.title === 'Parley' && document.getElementById('unread-total').hidden`, nil))

	// alice types: bob sees it; she sends.
	laptop.run(step, chromedp.SendKeys("#composer", "hi bob"))
	bob.run(step, chromedp.WaitVisible("#typing"), chromedp.Text("#typing", &title))
	if title != "alice is typing…" {
		t.Fatalf("bob's typing line %q", title)
	}
	t.Logf("wrote %s", bob.screenshot("devices-typing.png"))
	laptop.run(step, pressEnter(false))
	conv = append(conv, line{laptop.waitSent(room, "hi bob"), "alice", "hi bob"})
	bob.expect(room, conv)
	phone.expect(room, conv)

	// bob clicks alice's name: their direct room opens on his page, and
	// alice's devices are told of it live.
	const dm = "dm:alice:bob"
	bob.run(step,
		chromedp.Click(`.room-log[data-room="general"] .msg[data-from="alice"] button.from`),
		chromedp.WaitVisible(fmt.Sprintf(`.room-log[data-room=%q]`, dm)),
		chromedp.Text("#room-title", &title),
	)
	if title != "@alice" {
		t.Fatalf("bob's title in the direct room: %q", title)
	}
	for _, p := range []*tab{laptop, phone} {
		p.waitRoomListed(dm)
		var label string
		p.eval(fmt.Sprintf(`document.querySelector('#room-list li[data-room=%q] .room-name').textContent`, dm), &label)
		if label != "@bob" {
			t.Fatalf("%s: the direct room shows as %q, want @bob", p.name, label)
		}
	}
	seq := bob.say(dm, "psst, alice")
	laptop.waitUnread(dm, 1)
	laptop.selectRoom(dm)
	laptop.expect(dm, []line{{seq, "bob", "psst, alice"}})
	phone.waitUnread(dm, 0)

	// A private room: alice creates it and invites bob; it shows on her
	// phone and on bob's page, and not in the directory.
	laptop.run(step,
		chromedp.Click("#create-open"),
		chromedp.WaitVisible("#ask-input"),
		chromedp.SendKeys("#ask-input", "team"),
		chromedp.Click("#ask-ok"),
		chromedp.WaitNotVisible("#ask-dialog"),
		chromedp.WaitVisible(`.room-log[data-room="team"]`),
		chromedp.Text("#room-title", &title),
	)
	if title != "# team" {
		t.Fatalf("laptop title after creating team: %q", title)
	}
	phone.waitRoomListed("team")
	laptop.run(step,
		chromedp.Click("#invite-open"),
		chromedp.WaitVisible("#ask-input"),
		chromedp.SendKeys("#ask-input", "bob"),
		chromedp.Click("#ask-ok"),
		chromedp.WaitNotVisible("#ask-dialog"),
	)
	bob.waitRoomListed("team")
	seq = laptop.say("team", "welcome to the team")
	bob.selectRoom("team")
	bob.expect("team", []line{{seq, "alice", "welcome to the team"}})
	var listed []string
	bob.run(step, chromedp.Click("#browse-open"), chromedp.WaitVisible(`#browse-list li[data-room="lobby"]`))
	bob.eval(`[...document.querySelectorAll('#browse-list li')].map(li => li.dataset.room + ' ' + li.querySelector('.members').textContent)`, &listed)
	if got, want := strings.Join(listed, ", "), "general 2 members, lobby 2 members"; got != want {
		t.Fatalf("directory %q, want %q", got, want)
	}
	t.Logf("wrote %s", bob.screenshot("devices-directory.png"))
	bob.run(step, chromedp.Click("#browse-close"), chromedp.WaitNotVisible("#browse-dialog"))
	t.Logf("wrote %s", laptop.screenshot("devices-laptop.png"))

	// Who is online in general: alice on both pages, and bob himself.
	bob.selectRoom(room)
	bob.waitOnline("2 online: alice (2), bob (you)")
	t.Logf("wrote %s", bob.screenshot("devices-online.png"))
	// Her phone's page closes, and leaves the room with its connection
	// (leaving it from the room list would end her membership, and her
	// laptop would leave too): one device left. A page closed gracefully
	// ends its connection, so the change is at once.
	phone.checkClean()
	phone.run(step, page.Close())
	bob.waitOnline("2 online: alice, bob (you)")
	// Her name there opens their direct room, where her laptop is too.
	bob.run(step,
		chromedp.Click(`#online-list li[data-user="alice"] button.online-user`),
		chromedp.WaitVisible(fmt.Sprintf(`.room-log[data-room=%q]`, dm)),
		chromedp.Text("#room-title", &title),
	)
	if title != "@alice" {
		t.Fatalf("bob's title after clicking alice in the online list: %q", title)
	}
	bob.waitOnline("2 online: alice, bob (you)")
	// Back in general, her laptop closes: its connection ends with it, and
	// she is offline there at once.
	bob.selectRoom(room)
	bob.waitOnline("2 online: alice, bob (you)")
	laptop.checkClean()
	laptop.run(step, page.Close())
	bob.waitOnline("1 online: bob (you)")
	bob.checkClean()
}
