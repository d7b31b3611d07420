package loadgen

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// MinBodyBytes is the smallest body that holds a timestamp:
// "t=" + up to 19 digits + ";".
const MinBodyBytes = 22

// errNoStamp is returned by DecodeBody for a body without a timestamp.
var errNoStamp = errors.New("loadgen: body has no t=<unixnano>; prefix")

// EncodeBody returns a message body that starts with "t=<unix nanoseconds of
// sent>;" and is padded with 'x' to size bytes (longer when size is too small
// for the stamp).
func EncodeBody(sent time.Time, size int) string {
	var b strings.Builder
	b.Grow(max(size, MinBodyBytes))
	b.WriteString("t=")
	b.WriteString(strconv.FormatInt(sent.UnixNano(), 10))
	b.WriteByte(';')
	for b.Len() < size {
		b.WriteByte('x')
	}
	return b.String()
}

// DecodeBody returns the send time stamped on a body by EncodeBody.
func DecodeBody(body string) (time.Time, error) {
	rest, ok := strings.CutPrefix(body, "t=")
	if !ok {
		return time.Time{}, errNoStamp
	}
	i := strings.IndexByte(rest, ';')
	if i <= 0 {
		return time.Time{}, errNoStamp
	}
	ns, err := strconv.ParseInt(rest[:i], 10, 64)
	if err != nil {
		return time.Time{}, errNoStamp
	}
	return time.Unix(0, ns), nil
}
