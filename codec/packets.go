package codec

import (
	"errors"
	"fmt"

	"github.com/asticode/go-astiav"
)

// ReadPackets demuxes a media file and returns, per audio or video stream
// in file order, every packet's data in order. Verification compares them
// with the sealed originals: the export must carry the camera's bytes.
func ReadPackets(path string) ([][][]byte, error) {
	in := astiav.AllocFormatContext()
	if in == nil {
		return nil, errors.New("read packets: cannot allocate input context")
	}
	defer in.Free()
	if err := in.OpenInput(path, nil, nil); err != nil {
		return nil, fmt.Errorf("read packets: open %s: %w", path, err)
	}
	defer in.CloseInput()
	if err := in.FindStreamInfo(nil); err != nil {
		return nil, fmt.Errorf("read packets: stream info: %w", err)
	}
	index := map[int]int{}
	var out [][][]byte
	for _, s := range in.Streams() {
		if mt := s.CodecParameters().MediaType(); mt == astiav.MediaTypeVideo || mt == astiav.MediaTypeAudio {
			index[s.Index()] = len(out)
			out = append(out, nil)
		}
	}
	pkt := astiav.AllocPacket()
	defer pkt.Free()
	for {
		if err := in.ReadFrame(pkt); err != nil {
			if errors.Is(err, astiav.ErrEof) {
				return out, nil
			}
			return nil, fmt.Errorf("read packets: %w", err)
		}
		if i, ok := index[pkt.StreamIndex()]; ok {
			out[i] = append(out[i], append([]byte(nil), pkt.Data()...))
		}
		pkt.Unref()
	}
}
