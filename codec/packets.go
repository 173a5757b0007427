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
	// Every packet in the file counts, including those an edit list hides
	// from playback (an MP4's audio priming): verification compares what
	// the file holds with what was sealed.
	opts := astiav.NewDictionary()
	defer opts.Free()
	if err := opts.Set("ignore_editlist", "1", 0); err != nil {
		return nil, fmt.Errorf("read packets: options: %w", err)
	}
	if err := in.OpenInput(path, nil, opts); err != nil {
		return nil, fmt.Errorf("read packets: open %s: %w", path, err)
	}
	defer in.CloseInput()
	if err := in.FindStreamInfo(nil); err != nil {
		return nil, fmt.Errorf("read packets: stream info: %w", err)
	}
	out, err := readPackets(in)
	if err != nil {
		return nil, fmt.Errorf("read packets: %s: %w", path, err)
	}
	return out, nil
}

// ReadWebMPackets is ReadPackets for a WebM byte stream held in memory
// (a session's decrypted init segment and clusters): the plaintext is
// demuxed where it is and never written to disk.
func ReadWebMPackets(data []byte) ([][][]byte, error) {
	if !IsEBML(data) {
		return nil, errors.New("read webm packets: not a WebM (EBML) stream")
	}
	in, closeIn, err := openMemory(data, "matroska")
	if err != nil {
		return nil, fmt.Errorf("read webm packets: %w", err)
	}
	defer closeIn()
	out, err := readPackets(in)
	if err != nil {
		return nil, fmt.Errorf("read webm packets: %w", err)
	}
	return out, nil
}

// readPackets reads every audio and video packet of an opened input.
func readPackets(in *astiav.FormatContext) ([][][]byte, error) {
	index := map[int]int{}
	var out [][][]byte
	for _, s := range in.Streams() {
		if mt := s.CodecParameters().MediaType(); mt == astiav.MediaTypeVideo || mt == astiav.MediaTypeAudio {
			index[s.Index()] = len(out)
			out = append(out, nil)
		}
	}
	pkt := astiav.AllocPacket()
	if pkt == nil {
		return nil, errors.New("cannot allocate a packet")
	}
	defer pkt.Free()
	for {
		if err := in.ReadFrame(pkt); err != nil {
			if errors.Is(err, astiav.ErrEof) {
				return out, nil
			}
			return nil, err
		}
		if i, ok := index[pkt.StreamIndex()]; ok {
			out[i] = append(out[i], pkt.Data()) // Data copies into Go memory
		}
		pkt.Unref()
	}
}

// IsEBML reports whether data starts like a Matroska/WebM file.
func IsEBML(data []byte) bool {
	return len(data) >= 4 && data[0] == 0x1a && data[1] == 0x45 && data[2] == 0xdf && data[3] == 0xa3
}
