package whep

import "strings"

// KeyframeStart reports whether an RTP payload of the codec begins a
// keyframe, where a viewer can start decoding.
func KeyframeStart(mimeType string, p []byte) bool {
	switch strings.ToLower(mimeType) {
	case "video/h264":
		return h264KeyStart(p)
	case "video/vp8":
		return vp8KeyStart(p)
	}
	return true
}

// H.264 NAL unit types (RFC 6184): an IDR slice, the parameter sets that
// precede it, and the two aggregation and fragmentation packets.
const (
	nalIDR   = 5
	nalSPS   = 7
	nalPPS   = 8
	nalSTAPA = 24
	nalFUA   = 28
)

func h264KeyStart(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	switch typ := p[0] & 0x1f; typ {
	case nalIDR, nalSPS:
		return true
	case nalSTAPA:
		for rest := p[1:]; len(rest) >= 3; {
			n := int(rest[0])<<8 | int(rest[1])
			if n == 0 || len(rest) < 2+n {
				return false
			}
			if t := rest[2] & 0x1f; t == nalIDR || t == nalSPS {
				return true
			}
			rest = rest[2+n:]
		}
	case nalFUA:
		return len(p) >= 2 && p[1]&0x80 != 0 && p[1]&0x1f == nalIDR
	}
	return false
}

func startsWithSPS(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	switch p[0] & 0x1f {
	case nalSPS:
		return true
	case nalSTAPA:
		return len(p) >= 4 && p[3]&0x1f == nalSPS
	}
	return false
}

// stapA aggregates NAL units into one RTP payload (RFC 6184, 5.7.1).
func stapA(nalus ...[]byte) []byte {
	out := []byte{nalSTAPA | 0x60}
	for _, n := range nalus {
		out = append(out, byte(len(n)>>8), byte(len(n)))
		out = append(out, n...)
	}
	return out
}

// vp8KeyStart reads the VP8 payload descriptor (RFC 7741, 4.2): the start
// of partition 0 (S set, PID 0) of a frame whose header's P bit is clear.
func vp8KeyStart(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	x, s, pid := p[0]&0x80 != 0, p[0]&0x10 != 0, p[0]&0x07
	if !s || pid != 0 {
		return false
	}
	i := 1
	if x {
		if len(p) < 2 {
			return false
		}
		ext := p[1]
		i = 2
		if ext&0x80 != 0 { // I: picture id, one or two bytes
			if len(p) <= i {
				return false
			}
			if p[i]&0x80 != 0 {
				i++
			}
			i++
		}
		if ext&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if ext&0x30 != 0 { // T or K: TID/KEYIDX
			i++
		}
	}
	return len(p) > i && p[i]&0x01 == 0
}
