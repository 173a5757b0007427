package chunk

import "fmt"

// ObjectKey is where a chunk is stored: one prefix per incident (so an
// incident's objects are listed, held and deleted together), then its
// session, track and zero-padded sequence, so a listing sorts in
// recording order.
func ObjectKey(h Header) string {
	return fmt.Sprintf("%s/%s/%s/%08d.chunk", h.Incident, h.Session, h.Track, h.Seq)
}
