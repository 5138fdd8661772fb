package scripttest

import "strings"

// NumSlots is the number of Redis Cluster hash slots.
const NumSlots = 16384

// HashSlot returns the Redis Cluster hash slot of key: CRC16 (XMODEM) of the
// key modulo 16384, where a key containing a non-empty hash tag ("{tag}", the
// text between the first '{' and the first '}' after it) is hashed by its tag
// alone (cluster spec, "Hash tags").
func HashSlot(key string) int {
	if open := strings.IndexByte(key, '{'); open >= 0 {
		if n := strings.IndexByte(key[open+1:], '}'); n > 0 {
			key = key[open+1 : open+1+n]
		}
	}
	return int(crc16(key)) % NumSlots
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0), the checksum
// Redis Cluster uses for key slots.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for b := 0; b < 8; b++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
