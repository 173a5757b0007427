// Package fmp4 is the fragmented MP4 session container (docs/FORMAT.md
// "Chunk"): the writer of an H.264 session's init segment (ftyp+moov) and
// of its media segments (one moof+mdat each), and the reader that gives a
// stored session's samples back.
package fmp4

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4"

	"camvault/format/container"
	"camvault/internal/bufpool"
	"camvault/media"
)

// ErrUnsupported is returned by NewWriter for a track fMP4 is not written
// with.
var ErrUnsupported = errors.New("fmp4: unsupported track")

// Writer writes one session as fragmented MP4. Track IDs in the file are
// media.Track.ID+1 and each track's timescale is its clock rate. It
// implements container.Container; Marshal never fails.
type Writer struct {
	init   []byte
	tracks []writerTrack
	flags  []uint32 // per track, the trun flags of the segment being written
}

type writerTrack struct {
	id   uint32 // fMP4 track ID
	avcc bool   // H.264: each NAL unit gets a 4-byte length prefix
}

// NewWriter prepares a writer for the session's tracks, in order: H.264
// (with SPS and PPS), AAC and Opus (mono or stereo). The init segment is
// marshalled at once, which validates what it needs (the SPS is parsed for
// the picture size), so Init cannot fail later.
func NewWriter(tracks []media.Track) (*Writer, error) {
	w := &Writer{flags: make([]uint32, len(tracks))}
	var initTracks []*fmp4.InitTrack
	for _, mt := range tracks {
		var codec mp4.Codec
		switch mt.Codec {
		case media.CodecH264:
			codec = &mp4.CodecH264{SPS: mt.SPS, PPS: mt.PPS}
		case media.CodecAAC:
			var conf mpeg4audio.AudioSpecificConfig
			if err := conf.Unmarshal(mt.AudioConfig); err != nil {
				return nil, fmt.Errorf("%w: track %d: AAC config: %v", ErrUnsupported, mt.ID, err)
			}
			codec = &mp4.CodecMPEG4Audio{Config: conf}
		case media.CodecOpus:
			// dOps is written with channel mapping family 0, which
			// allows mono and stereo only.
			if mt.ChannelCount < 1 || mt.ChannelCount > 2 {
				return nil, fmt.Errorf("%w: track %d: Opus with %d channels", ErrUnsupported, mt.ID, mt.ChannelCount)
			}
			codec = &mp4.CodecOpus{ChannelCount: mt.ChannelCount}
		default:
			return nil, fmt.Errorf("%w: track %d: codec %q", ErrUnsupported, mt.ID, mt.Codec)
		}
		initTracks = append(initTracks, &fmp4.InitTrack{ID: mt.ID + 1, TimeScale: uint32(mt.ClockRate), Codec: codec})
		w.tracks = append(w.tracks, writerTrack{id: uint32(mt.ID + 1), avcc: mt.Codec == media.CodecH264})
	}
	var buf seekablebuffer.Buffer
	if err := (&fmp4.Init{Tracks: initTracks}).Marshal(&buf); err != nil {
		return nil, fmt.Errorf("fmp4: init segment: %w", err)
	}
	w.init = buf.Bytes()
	return w, nil
}

// Init returns the init segment: ftyp+moov for all tracks.
func (w *Writer) Init() ([]byte, error) {
	return append([]byte(nil), w.init...), nil
}

// PayloadSize is the size of a sample of nalus as written: AVCC (4-byte
// length prefixes, empty NAL units skipped) for H.264, the bytes
// otherwise. The segmenter counts a segment's size with it before the
// segment is written.
func PayloadSize(avcc bool, nalus [][]byte) int {
	n := 0
	for _, b := range nalus {
		if len(b) == 0 {
			continue
		}
		n += len(b)
		if avcc {
			n += 4
		}
	}
	return n
}

// Box sizes of the fragment written by Marshal; the layout is the one
// fmp4.Part.Marshal produces (moof{mfhd, traf{tfhd, tfdt v1, trun v1}...},
// mdat), written straight into the result to avoid copying the payload
// twice per segment.
const (
	boxHeader  = 8
	mfhdSize   = boxHeader + 8
	tfhdSize   = boxHeader + 8
	tfdtSize   = boxHeader + 12
	trunFixed  = boxHeader + 12
	trafFixed  = boxHeader + tfhdSize + tfdtSize + trunFixed
	tfhdFlags  = 0x020000 // default-base-is-moof
	trunOffset = 0x000001
	trunDur    = 0x000100
	trunSize   = 0x000200
	trunFlags  = 0x000400
	trunCTO    = 0x000800
	nonSync    = 1 << 16
)

// Marshal returns one moof+mdat carrying exactly the given samples, with
// seq as its mfhd sequence number. A track without samples gets no traf.
// The result is pooled (camvault/internal/bufpool): the caller may return
// it once the segment is sealed.
func (w *Writer) Marshal(seq uint64, tracks [][]container.Sample) ([]byte, error) {
	if len(tracks) != len(w.tracks) {
		return nil, fmt.Errorf("fmp4: segment %d has %d tracks, the writer %d", seq, len(tracks), len(w.tracks))
	}
	moofSize := boxHeader + mfhdSize
	payload := 0
	flags := w.flags
	for i, samples := range tracks {
		flags[i] = 0
		n := len(samples)
		if n == 0 {
			continue
		}
		f := uint32(trunOffset | trunDur | trunSize)
		for _, sm := range samples {
			if !sm.Key {
				f |= trunFlags
			}
			if sm.PTSOffset != 0 {
				f |= trunCTO
			}
			payload += PayloadSize(w.tracks[i].avcc, sm.Data)
		}
		flags[i] = f
		moofSize += trafFixed + n*entrySize(f)
	}

	out := bufpool.Get(moofSize + boxHeader + payload)
	b := out[:0]
	b = boxStart(b, moofSize, "moof")
	b = boxStart(b, mfhdSize, "mfhd")
	b = binary.BigEndian.AppendUint32(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(seq))
	dataOff := moofSize + boxHeader
	for i, samples := range tracks {
		n := len(samples)
		if n == 0 {
			continue
		}
		t := w.tracks[i]
		es := entrySize(flags[i])
		b = boxStart(b, trafFixed+n*es, "traf")
		b = boxStart(b, tfhdSize, "tfhd")
		b = binary.BigEndian.AppendUint32(b, tfhdFlags)
		b = binary.BigEndian.AppendUint32(b, t.id)
		b = boxStart(b, tfdtSize, "tfdt")
		b = binary.BigEndian.AppendUint32(b, 1<<24) // version 1
		b = binary.BigEndian.AppendUint64(b, uint64(samples[0].DTS))
		b = boxStart(b, trunFixed+n*es, "trun")
		b = binary.BigEndian.AppendUint32(b, 1<<24|flags[i])
		b = binary.BigEndian.AppendUint32(b, uint32(n))
		b = binary.BigEndian.AppendUint32(b, uint32(dataOff))
		for _, sm := range samples {
			size := PayloadSize(t.avcc, sm.Data)
			b = binary.BigEndian.AppendUint32(b, sm.Duration)
			b = binary.BigEndian.AppendUint32(b, uint32(size))
			if flags[i]&trunFlags != 0 {
				var sf uint32
				if !sm.Key {
					sf = nonSync
				}
				b = binary.BigEndian.AppendUint32(b, sf)
			}
			if flags[i]&trunCTO != 0 {
				b = binary.BigEndian.AppendUint32(b, uint32(sm.PTSOffset))
			}
			dataOff += size
		}
	}
	b = boxStart(b, boxHeader+payload, "mdat")
	for i, samples := range tracks {
		avcc := w.tracks[i].avcc
		for _, sm := range samples {
			for _, n := range sm.Data {
				if len(n) == 0 {
					continue
				}
				if avcc {
					b = binary.BigEndian.AppendUint32(b, uint32(len(n)))
				}
				b = append(b, n...)
			}
		}
	}
	return b, nil
}

func entrySize(flags uint32) int {
	n := 8
	if flags&trunFlags != 0 {
		n += 4
	}
	if flags&trunCTO != 0 {
		n += 4
	}
	return n
}

func boxStart(b []byte, size int, typ string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(size))
	return append(b, typ...)
}
