package broker

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/parley-chat/parley/pkg/protocol"
)

// EnvelopeParts splits the "message" frame of p into the text before the seq
// and the text after the epoch, so that a store can assemble the envelope
// once it has assigned seq and epoch (see Assemble). Both implementations
// build envelopes this way, so their bytes are identical.
func EnvelopeParts(p Publication) (head, tail string) {
	var b strings.Builder
	b.WriteString(`{"type":"message","room":`)
	writeJSONString(&b, p.Room)
	b.WriteString(`,"seq":`)
	head = b.String()

	b.Reset()
	b.WriteString(`"id":`)
	writeJSONString(&b, p.ID)
	b.WriteString(`,"from":`)
	writeJSONString(&b, p.From)
	if p.Device != "" {
		b.WriteString(`,"device":`)
		writeJSONString(&b, p.Device)
	}
	b.WriteString(`,"ts":`)
	writeJSONString(&b, p.TS)
	b.WriteString(`,"body":`)
	writeJSONString(&b, p.Body)
	b.WriteString(`}`)
	return head, b.String()
}

// Assemble joins the parts from EnvelopeParts with seq and epoch. The Redis
// publish script does the same concatenation in Lua.
func Assemble(head string, seq int64, epoch, tail string) []byte {
	b := make([]byte, 0, len(head)+len(tail)+len(epoch)+32)
	b = append(b, head...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"epoch":"`...)
	b = append(b, epoch...)
	b = append(b, `",`...)
	b = append(b, tail...)
	return b
}

func writeJSONString(b *strings.Builder, s string) {
	q, _ := json.Marshal(s) // a string always marshals
	b.Write(q)
}

// ParseEnvelope decodes a stored or published envelope.
func ParseEnvelope(raw []byte) (Envelope, error) {
	m, err := protocol.DecodeMessage(raw)
	if err != nil {
		return Envelope{}, err
	}
	return Envelope{Message: m, Raw: raw}, nil
}

// NewEpoch returns a fresh random epoch id.
func NewEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Now returns the current time in protocol.TimeLayout.
func Now() string { return protocol.FormatTime(time.Now()) }

// Defaults shared by the implementations.
const (
	// DefaultRetention is how many messages a room's history keeps.
	DefaultRetention = 1000
	// DefaultIdempotencyWindow is how long an ack is remembered for resends.
	DefaultIdempotencyWindow = 5 * time.Minute
	// MinIdempotencyWindow is the shortest window the contract allows.
	MinIdempotencyWindow = 2 * time.Minute
)
