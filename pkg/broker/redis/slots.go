package redis

import (
	"strconv"
	"strings"
)

// slotCount is how many hash slots a Redis Cluster has.
const slotCount = 16384

// Slot returns the Redis Cluster hash slot of a key or shard channel, as
// CLUSTER KEYSLOT does: CRC16 (XMODEM) of its hash tag, the part between
// the first '{' and the next '}' when that part is not empty, else of the
// whole key, modulo 16384.
func Slot(key string) int { return slotOf(key) }

func slotOf(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key)) % slotCount
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial 0), the checksum
// Redis Cluster hashes keys with.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// tagFor returns a hash tag whose slot is one of those owns reports true
// for, or "" when it finds none in 1<<16 tries (owns holds no slot, or
// very few). The tags are "p0", "p1", ...: the first hit is stable for a
// given set of slots.
func tagFor(owns func(slot int) bool) string {
	for i := range 1 << 16 {
		tag := "p" + strconv.Itoa(i)
		if owns(int(crc16(tag)) % slotCount) {
			return tag
		}
	}
	return ""
}
