package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

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

// tailConfig is what `parley tail` runs with: its flags (defaults as
// given, each also settable as PARLEY_<FLAG>) and its argument.
type tailConfig struct {
	clientOptions        // --url, --user, --token, --device
	room          string // ROOM, the one argument
	since         int64  // --since: print the messages after this seq; default -1: not given, the room's backlog
	epoch         string // --epoch: the epoch --since refers to; default "": the room's current one
}

// parseTail parses and checks tail's flags and argument (and PARLEY_*
// variables). It reports ok false with the exit code when there is nothing
// to run: --help (0) or a bad flag or argument, one line on stderr (2).
func parseTail(args []string, stderr io.Writer) (cfg tailConfig, code int, ok bool) {
	fs := newClientFlags("tail", &cfg.clientOptions)
	cfg.since = -1 // not given
	fs.Func("since", "print the messages after `SEQ` (0: every retained message); default: the room's backlog", func(s string) error {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return errors.New("want a seq, a number >= 0")
		}
		cfg.since = n
		return nil
	})
	fs.StringVar(&cfg.epoch, "epoch", "", "the `EPOCH` --since refers to (from an earlier message); default: the room's current epoch")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return cfg, flagExit(fs, tailHelp, err, stderr), false
	}
	usage := func(format string, a ...any) (tailConfig, int, bool) {
		fmt.Fprintf(stderr, "parley tail: "+format+"\n", a...)
		return cfg, 2, false
	}
	if len(pos) != 1 {
		return usage("want exactly one ROOM argument, got %d (parley tail --help)", len(pos))
	}
	cfg.room = pos[0]
	if !protocol.ValidRoom(cfg.room) {
		return usage("invalid room name %q", cfg.room)
	}
	if cfg.epoch != "" && cfg.since < 0 {
		return usage("--epoch needs --since")
	}
	if err := cfg.check(); err != nil {
		return usage("%v", err)
	}
	return cfg, 0, true
}

// runTail prints cfg.room's messages and follows the room until ctx ends
// (exit 0), or until the connection, the join or standard output fails
// for good (exit 1).
func runTail(ctx context.Context, cfg tailConfig, stdout, stderr io.Writer) int {
	room := cfg.room
	c, err := cfg.dial(ctx, false)
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
		last := max(cfg.since, 0) // last seq printed, or the one to start after
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
	if cfg.since >= 0 {
		from = &protocol.Since{Epoch: cfg.epoch, Seq: cfg.since}
		if cfg.epoch == "" && cfg.since > 0 {
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
