// Package codec is camvault's small, safe layer over the FFmpeg libraries
// (github.com/asticode/go-astiav, FFmpeg 5.1). Every FFmpeg object it
// allocates is freed on every path before a function returns.
package codec

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/asticode/go-astiav"
)

// FFmpeg's seek flags (libavformat/avio.h), which go-astiav passes through.
const (
	avseekSize  = 0x10000
	avseekForce = 0x20000
)

// Remuxer rewrites a session's stored byte stream, held in memory, into
// the export's file, copying every packet: the bitstream is never
// re-encoded, so the export is the camera's own video. A fragmented MP4
// becomes a regular MP4 (moov at the front); a live WebM (VP8/Opus)
// becomes a regular WebM, with its duration and cues.
type Remuxer struct{}

// Remux implements evidence.Remuxer. The output's extension chooses the
// container (.webm for WebM, anything else MP4) and must match the
// input's. The plaintext input is read from memory through a custom I/O
// context: it never touches disk before the export file itself.
func (Remuxer) Remux(ctx context.Context, stored []byte, outPath string) (err error) {
	inFormat, outFormat := "mp4", "mp4"
	if strings.EqualFold(filepath.Ext(outPath), ".webm") {
		inFormat, outFormat = "matroska", "webm"
	}
	if IsEBML(stored) != (outFormat == "webm") {
		return fmt.Errorf("remux: %s needs a %s input", filepath.Base(outPath), strings.ToUpper(outFormat))
	}
	in, closeIn, err := openMemory(stored, inFormat)
	if err != nil {
		return fmt.Errorf("remux: %w", err)
	}
	defer closeIn()

	out, err := astiav.AllocOutputFormatContext(nil, outFormat, outPath)
	if err != nil || out == nil {
		return fmt.Errorf("remux: output context: %v", err)
	}
	defer out.Free()
	mapping := map[int]*astiav.Stream{}
	inputs := map[int]*astiav.Stream{}
	for _, is := range in.Streams() {
		mt := is.CodecParameters().MediaType()
		if mt != astiav.MediaTypeVideo && mt != astiav.MediaTypeAudio {
			continue
		}
		os := out.NewStream(nil)
		if os == nil {
			return errors.New("remux: cannot add output stream")
		}
		if err := is.CodecParameters().Copy(os.CodecParameters()); err != nil {
			return fmt.Errorf("remux: copy codec parameters: %w", err)
		}
		os.CodecParameters().SetCodecTag(0)
		os.SetTimeBase(is.TimeBase())
		mapping[is.Index()] = os
		inputs[is.Index()] = is
	}
	if len(mapping) == 0 {
		return errors.New("remux: no audio or video stream")
	}
	pb, err := astiav.OpenIOContext(outPath, astiav.NewIOContextFlags(astiav.IOContextFlagWrite))
	if err != nil {
		return fmt.Errorf("remux: create %s: %w", outPath, err)
	}
	defer func() {
		if cerr := pb.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("remux: close %s: %w", outPath, cerr)
		}
	}()
	out.SetPb(pb)
	opts := astiav.NewDictionary()
	defer opts.Free()
	if outFormat == "mp4" {
		if err := opts.Set("movflags", "+faststart", 0); err != nil {
			return fmt.Errorf("remux: options: %w", err)
		}
	}
	if err := out.WriteHeader(opts); err != nil {
		return fmt.Errorf("remux: write header: %w", err)
	}
	pkt := astiav.AllocPacket()
	defer pkt.Free()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := in.ReadFrame(pkt); err != nil {
			if errors.Is(err, astiav.ErrEof) {
				break
			}
			return fmt.Errorf("remux: read packet: %w", err)
		}
		os, ok := mapping[pkt.StreamIndex()]
		if !ok {
			pkt.Unref()
			continue
		}
		pkt.RescaleTs(inputs[pkt.StreamIndex()].TimeBase(), os.TimeBase())
		pkt.SetStreamIndex(os.Index())
		pkt.SetPos(-1)
		err := out.WriteInterleavedFrame(pkt) // takes ownership of the packet's data
		if err != nil {
			return fmt.Errorf("remux: write packet: %w", err)
		}
	}
	if err := out.WriteTrailer(); err != nil {
		return fmt.Errorf("remux: write trailer: %w", err)
	}
	return nil
}
