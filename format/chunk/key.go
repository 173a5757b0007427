package chunk

import (
	"fmt"
	"strconv"
	"strings"
)

// ObjectKey is where a chunk is stored: <incident>/<session>/<track>/<seq,
// 8 digits>.chunk. The key is also the chunk's path under chunks/ in an
// export, so it must stay the same for as long as any chunk is kept; the
// fixed-width seq makes a listing of one track sort in sequence order.
func ObjectKey(h Header) string {
	return fmt.Sprintf("%s/%s/%s/%08d%s", h.Incident, h.Session, h.Track, h.Seq, objectSuffix)
}

const objectSuffix = ".chunk"

// ParseObjectKey splits a key made by ObjectKey into the header fields it
// names. It refuses anything else, so a key read back from a store or a
// manifest can be trusted to place the chunk.
func ParseObjectKey(key string) (h Header, err error) {
	parts := strings.Split(key, "/")
	if len(parts) != 4 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return h, fmt.Errorf("%w: object key %q: want incident/session/track/seq.chunk", ErrMalformed, key)
	}
	digits, ok := strings.CutSuffix(parts[3], objectSuffix)
	if !ok || len(digits) < 8 || strings.TrimLeft(digits, "0123456789") != "" {
		return h, fmt.Errorf("%w: object key %q: bad sequence part", ErrMalformed, key)
	}
	seq, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return h, fmt.Errorf("%w: object key %q: %v", ErrMalformed, key, err)
	}
	h = Header{Incident: parts[0], Session: parts[1], Track: parts[2], Seq: seq}
	if ObjectKey(h) != key {
		// Leading zeros beyond the fixed width name the same seq with
		// another key: only the canonical key is the chunk's place.
		return Header{}, fmt.Errorf("%w: object key %q is not canonical", ErrMalformed, key)
	}
	return h, nil
}
