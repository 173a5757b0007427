package codec

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/asticode/go-astiav"
)

// memoryReader serves an input held in memory to FFmpeg. The I/O
// context's callbacks hold it rather than the data: go-astiav v0.16.0
// keeps every I/O context's callbacks in a global map it never cleans, so
// release drops the data to keep the plaintext from living on there.
type memoryReader struct {
	r sizedReader
}

// sizedReader is an input in memory: a bytes.Reader, or a partsReader
// over pieces read as one without being copied together.
type sizedReader interface {
	io.ReadSeeker
	Size() int64
}

// partsReader reads its parts one after the other as a single input.
type partsReader struct {
	parts [][]byte
	size  int64
	off   int64
}

func newPartsReader(parts ...[]byte) *partsReader {
	r := &partsReader{parts: parts}
	for _, p := range parts {
		r.size += int64(len(p))
	}
	return r
}

func (r *partsReader) Size() int64 { return r.size }

func (r *partsReader) Read(b []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	n, base := 0, int64(0)
	for _, p := range r.parts {
		end := base + int64(len(p))
		if r.off < end && n < len(b) {
			k := copy(b[n:], p[r.off-base:])
			n += k
			r.off += int64(k)
		}
		base = end
	}
	return n, nil
}

func (r *partsReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.size
	default:
		return 0, fmt.Errorf("seek: whence %d", whence)
	}
	if offset < 0 {
		return 0, errors.New("seek: negative position")
	}
	r.off = offset
	return offset, nil
}

// FFmpeg's seek flags (libavformat/avio.h), which go-astiav passes through.
const (
	avseekSize  = 0x10000
	avseekForce = 0x20000
)

func (m *memoryReader) read(b []byte) (int, error) {
	if m.r == nil {
		return 0, astiav.ErrEof
	}
	n, err := m.r.Read(b)
	if err == io.EOF {
		// FFmpeg must see its own end-of-file code: any other error
		// reads as a failed read, which matters to demuxers that read
		// to the end (a live WebM has no sizes to stop at).
		if n > 0 {
			return n, nil
		}
		return 0, astiav.ErrEof
	}
	return n, err
}

func (m *memoryReader) seek(offset int64, whence int) (int64, error) {
	if m.r == nil {
		return 0, errors.New("input released")
	}
	if whence&avseekSize != 0 {
		return m.r.Size(), nil
	}
	return m.r.Seek(offset, whence&^avseekForce)
}

// openMemory opens data as an input of the named format (FFmpeg's short
// name) and reads its stream information. The returned function closes
// and frees everything, and must be called once the input is opened.
func openMemory(data []byte, format string) (*astiav.FormatContext, func(), error) {
	return openMemoryInput(data, format, true)
}

// openMemoryInput is openMemory, probing the streams (which decodes the
// first frames) only when probe is set: MP4 and WebM headers already
// describe their streams, and the transcoders need nothing more.
func openMemoryInput(data []byte, format string, probe bool) (_ *astiav.FormatContext, _ func(), err error) {
	return openReaderInput(bytes.NewReader(data), format, probe)
}

// openReaderInput is openMemoryInput over any input held in memory.
func openReaderInput(r sizedReader, format string, probe bool) (_ *astiav.FormatContext, _ func(), err error) {
	in := astiav.AllocFormatContext()
	if in == nil {
		return nil, nil, errors.New("cannot allocate input context")
	}
	mr := &memoryReader{r: r}
	ioc, err := astiav.AllocIOContext(64<<10, false, mr.read, mr.seek, nil)
	if err != nil {
		in.Free()
		return nil, nil, fmt.Errorf("io context: %w", err)
	}
	opened := false
	cleanup := func() {
		if opened {
			in.CloseInput() // leaves the custom I/O context to us
		}
		ioc.Free()
		in.Free()
		mr.r = nil
	}
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	in.SetPb(ioc)
	inFormat := astiav.FindInputFormat(format)
	if inFormat == nil {
		return nil, nil, fmt.Errorf("no %s demuxer", format)
	}
	if err := in.OpenInput("", inFormat, nil); err != nil {
		return nil, nil, fmt.Errorf("open input: %w", err)
	}
	opened = true
	if !probe {
		return in, cleanup, nil
	}
	if err := in.FindStreamInfo(nil); err != nil {
		return nil, nil, fmt.Errorf("stream info: %w", err)
	}
	return in, cleanup, nil
}
