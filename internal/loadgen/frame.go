package loadgen

import (
	"encoding/json"
	"fmt"
)

// decodeFrame fills f from one server frame. The load generator decodes
// every delivered frame on the same cores as the gateway it measures, so
// the flat objects the gateway sends (message, ack, joined, error) are read
// by scanFrame, several times cheaper than encoding/json; anything else it
// does not take (escapes in a string, nested values, a malformed frame)
// goes to encoding/json, which gives the same fields or the error.
func decodeFrame(b []byte, f *inFrame) error {
	*f = inFrame{}
	if scanFrame(b, f) {
		return nil
	}
	*f = inFrame{}
	if err := json.Unmarshal(b, f); err != nil {
		return fmt.Errorf("undecodable frame: %w", err)
	}
	return nil
}

// scanFrame reads a flat JSON object whose keys are plain and whose values
// are strings without escapes, integers, true, false or null into f. It
// reports false, having perhaps filled part of f, for anything else.
func scanFrame(b []byte, f *inFrame) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return skipSpace(b, i+1) == len(b)
	}
	for {
		ks, ke, ok := scanString(b, i)
		if !ok || !lowerKey(b[ks:ke]) {
			return false
		}
		key := b[ks:ke]
		i = skipSpace(b, ke+1)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		if i >= len(b) {
			return false
		}
		switch c := b[i]; {
		case c == '"':
			vs, ve, ok := scanString(b, i)
			if !ok {
				return false
			}
			i = ve + 1
			s := b[vs:ve]
			switch string(key) {
			case "type":
				f.Type = string(s)
			case "ref":
				f.Ref = string(s)
			case "room":
				f.Room = string(s)
			case "epoch":
				f.Epoch = string(s)
			case "body":
				f.Body = string(s)
			case "code":
				f.Code = string(s)
			case "message":
				f.Message = string(s)
			case "seq", "recovered":
				return false // a type encoding/json would reject
			}
		case c == '-' || (c >= '0' && c <= '9'):
			j := i
			if c == '-' {
				j++
			}
			if j+1 < len(b) && b[j] == '0' && b[j+1] >= '0' && b[j+1] <= '9' {
				return false // a leading zero: not JSON
			}
			for j < len(b) && b[j] >= '0' && b[j] <= '9' {
				j++
			}
			if j < len(b) && (b[j] == '.' || b[j] == 'e' || b[j] == 'E') {
				return false
			}
			n, ok := parseInt(b[i:j])
			if !ok {
				return false
			}
			i = j
			switch string(key) {
			case "seq":
				f.Seq = n
			case "type", "ref", "room", "epoch", "body", "code", "message", "recovered":
				return false
			}
		default:
			v, j, ok := scanLiteral(b, i)
			if !ok {
				return false
			}
			i = j
			switch string(key) {
			case "recovered":
				if v != nil {
					f.Recovered = v
				}
			case "seq", "type", "ref", "room", "epoch", "body", "code", "message":
				if v != nil {
					return false
				}
			}
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return skipSpace(b, i+1) == len(b)
		default:
			return false
		}
	}
}

// scanString finds the string starting at b[i] == '"': its contents are
// b[start:end] and b[end] is the closing quote. Strings with escapes,
// control bytes or non-ASCII bytes (which encoding/json checks as UTF-8)
// are left to encoding/json.
func scanString(b []byte, i int) (start, end int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return i + 1, j, true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return 0, 0, false
		}
	}
	return 0, 0, false
}

// parseInt parses an optionally negative decimal integer that fits in an
// int64.
func parseInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 { // 18 digits always fit; longer ones are left to encoding/json
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// scanLiteral reads true, false or null; v is nil for null.
func scanLiteral(b []byte, i int) (v *bool, next int, ok bool) {
	for _, lit := range [...]string{"true", "false", "null"} {
		if len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit {
			switch lit {
			case "true":
				t := true
				return &t, i + len(lit), true
			case "false":
				f := false
				return &f, i + len(lit), true
			}
			return nil, i + len(lit), true
		}
	}
	return nil, 0, false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// lowerKey reports whether key has no upper-case letter: encoding/json
// matches keys to fields case-insensitively, so "Seq" is left to it.
func lowerKey(key []byte) bool {
	for _, c := range key {
		if c >= 'A' && c <= 'Z' {
			return false
		}
	}
	return true
}
