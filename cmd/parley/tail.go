package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/parley-chat/parley/pkg/client"
	"github.com/parley-chat/parley/pkg/protocol"
)

const tailHelp = `Usage: parley tail [flags] ROOM

Prints ROOM's messages to standard output, one JSON object per line (the
message frame: type, room, seq, epoch, id, from, device, ts, body), then
follows the room live. Without --since it starts with the room's backlog
(the gateway's --backlog, default 50); with --since it prints every message
after that seq. Across reconnects it resumes from the last message printed,
with no gap and no duplicate. Connection changes and warnings go to standard
error only: a resume that could not recover every missed message (history
trimmed, or the room's store lost) prints a warning there. SIGINT or SIGTERM
ends it with exit status 0.

`

func tail(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runTail(ctx, args, stdout, stderr)
}

func runTail(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o clientOptions
	fs := newClientFlags("tail", &o)
	since := new(int64)
	*since = -1 // not given
	fs.Func("since", "print the messages after `SEQ` (0: every retained message); default: the room's backlog", func(s string) error {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return errors.New("want a seq, a number >= 0")
		}
		*since = n
		return nil
	})
	epoch := fs.String("epoch", "", "the `EPOCH` --since refers to (from an earlier message); default: the room's current epoch")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return flagExit(fs, tailHelp, err, stderr)
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "parley tail: "+format+"\n", a...)
		return 2
	}
	if len(pos) != 1 {
		return usage("want exactly one ROOM argument, got %d (parley tail --help)", len(pos))
	}
	room := pos[0]
	if !protocol.ValidRoom(room) {
		return usage("invalid room name %q", room)
	}
	if *epoch != "" && *since < 0 {
		return usage("--epoch needs --since")
	}
	if err := o.check(); err != nil {
		return usage("%v", err)
	}

	c, err := o.dial(ctx, false)
	if err != nil {
		fmt.Fprintf(stderr, "parley tail: %v\n", err)
		return 1
	}
	warn := func(format string, a ...any) { fmt.Fprintf(stderr, "parley tail: "+format+"\n", a...) }

	// The printer owns Events: it writes the messages and reports the
	// rest, until the Client closes the channel.
	out := bufio.NewWriter(stdout)
	failed := make(chan error, 1) // why the printer gave up
	printed := make(chan struct{})
	go func() {
		defer close(printed)
		last := max(*since, 0) // last seq printed, or the one to start after
		broken := false
		joins := 0 // joined frames seen; the first answers our Join
		for ev := range c.Events() {
			switch {
			case broken:
				// Keep draining so that Close does not wait on us.
			case ev.Message != nil:
				b, err := json.Marshal(ev.Message)
				if err == nil {
					b = append(b, '\n')
					_, err = out.Write(b)
				}
				if err == nil {
					err = out.Flush()
				}
				if err != nil {
					broken = true
					failed <- fmt.Errorf("write stdout: %w", err)
					continue
				}
				last = ev.Message.Seq
			case ev.Joined != nil:
				j := ev.Joined
				if j.Recovered != nil && !*j.Recovered {
					warn("warning: %s: some messages after seq %d were lost (history trimmed or the room's store reset; recovered:false); continuing from seq %d of epoch %s",
						j.Room, last, max(j.First, 1), j.Epoch)
				} else if joins > 0 {
					warn("resumed %s: seq %d is the newest", j.Room, j.Seq)
				}
				joins++
			case ev.Error != nil:
				warn("server: %s: %s", ev.Error.Code, oneLine(ev.Error.Message))
			case ev.State == client.StateReconnecting:
				warn("reconnecting: %s", reason(ev.Err))
			case ev.State == client.StateConnected:
				warn("connected to %s", c.Welcome().Node)
			case ev.State == client.StateClosed && ev.Err != nil:
				broken = true
				failed <- fmt.Errorf("disconnected for good: %s", reason(ev.Err))
			}
		}
	}()
	defer func() {
		_ = c.Close()
		<-printed
	}()

	var from *protocol.Since
	if *since >= 0 {
		from = &protocol.Since{Epoch: *epoch, Seq: *since}
		if *epoch == "" && *since > 0 {
			// Without an epoch the gateway would treat --since as
			// belonging to another epoch; take the room's current one.
			msgs, err := c.History(ctx, room, 0, 1)
			if err != nil {
				if ctx.Err() != nil {
					return 0
				}
				warn("read %s: %s", room, describe(err))
				return 1
			}
			if len(msgs) > 0 {
				from.Epoch = msgs[0].Epoch
			} else {
				// An empty room has no epoch, so --since names no
				// position in it (the gateway refuses a seq without its
				// epoch): every message it gets from now on is new.
				from.Seq = 0
			}
		}
	}
	j, err := c.Join(ctx, room, from)
	if err != nil {
		if ctx.Err() != nil {
			return 0
		}
		warn("join %s: %s", room, describe(err))
		return 1
	}
	warn("following %s on %s (head seq %d)", room, c.Welcome().Node, j.Seq)

	select {
	case <-ctx.Done():
		return 0
	case err := <-failed:
		warn("%v", err)
		return 1
	}
}
