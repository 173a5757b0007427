// Package webm is the WebM session container (docs/FORMAT.md "WebM
// sessions"): reading a session's stored stream back into its samples, and
// the VP8 keyframe header the stream's picture size comes from. The writer
// needs FFmpeg (cgo) and lives in camvault/codec as WebMWriter, so that
// reading evidence needs no cgo.
//
// A session recorded as WebM (VP8 video, Opus audio) is read here with a
// small Matroska parser of camvault's own rather than with FFmpeg: the
// sealed samples are the reference the exported file is checked against,
// and that check means more when the two sides are not read by the same
// library. It reads what camvault's WebM writer produces: an EBML header,
// a Segment (of unknown size) with Tracks, then Clusters of known size
// holding SimpleBlocks or BlockGroups without lacing.
package webm

import (
	"errors"
	"fmt"

	"camvault/media"
)

// Matroska element IDs, with their length markers, as they appear on the
// wire.
const (
	mkvEBML        = 0x1A45DFA3
	mkvSegment     = 0x18538067
	mkvTracks      = 0x1654AE6B
	mkvTrackEntry  = 0xAE
	mkvTrackNumber = 0xD7
	mkvCodecID     = 0x86
	mkvCluster     = 0x1F43B675
	mkvSimpleBlock = 0xA3
	mkvBlockGroup  = 0xA0
	mkvBlock       = 0xA1
)

// unknownSize marks an element whose size field is all ones.
const unknownSize = -1

var errTruncated = errors.New("truncated element")

// mkvElement reads the header of the element at the start of b: its ID
// (with the length marker, as Matroska IDs are written), the size of its
// body (unknownSize when unknown) and the header's length.
func mkvElement(b []byte) (id uint32, size int64, n int, err error) {
	idLen, idVal, err := mkvVint(b, true)
	if err != nil {
		return 0, 0, 0, err
	}
	if idLen > 4 {
		return 0, 0, 0, fmt.Errorf("element ID of %d bytes", idLen)
	}
	sizeLen, sizeVal, err := mkvVint(b[idLen:], false)
	if err != nil {
		return 0, 0, 0, err
	}
	if sizeVal == 1<<(7*sizeLen)-1 {
		return uint32(idVal), unknownSize, idLen + sizeLen, nil
	}
	return uint32(idVal), int64(sizeVal), idLen + sizeLen, nil
}

// mkvVint reads an EBML variable-length integer: the number of leading
// zero bits of its first byte gives its length.
func mkvVint(b []byte, keepMarker bool) (int, uint64, error) {
	if len(b) == 0 {
		return 0, 0, errTruncated
	}
	if b[0] == 0 {
		return 0, 0, errors.New("invalid variable-length integer")
	}
	n := 1
	for b[0]&(0x80>>(n-1)) == 0 {
		n++
	}
	if len(b) < n {
		return 0, 0, errTruncated
	}
	v := uint64(b[0])
	if !keepMarker {
		v &= 0xff >> n
	}
	for _, c := range b[1:n] {
		v = v<<8 | uint64(c)
	}
	return n, v, nil
}

// mkvChildren calls fn for each element in b, which must hold whole
// elements of known size.
func mkvChildren(b []byte, fn func(id uint32, body []byte) error) error {
	for len(b) > 0 {
		id, size, n, err := mkvElement(b)
		if err != nil {
			return err
		}
		if size == unknownSize {
			return fmt.Errorf("element %x of unknown size", id)
		}
		if size > int64(len(b)-n) {
			return fmt.Errorf("element %x of %d bytes: %w", id, size, errTruncated)
		}
		if err := fn(id, b[n:n+int(size)]); err != nil {
			return err
		}
		b = b[n+int(size):]
	}
	return nil
}

func mkvUint(b []byte) (uint64, error) {
	if len(b) > 8 {
		return 0, fmt.Errorf("unsigned integer of %d bytes", len(b))
	}
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v, nil
}

// Samples returns each track's frames in order, tracks in the order of
// their entries in Tracks (the stream order a demuxer reports).
func Samples(data []byte) ([][][]byte, error) {
	out, _, err := Tracks(data)
	return out, err
}

// codecNames names Matroska CodecIDs as FFmpeg names the codecs.
var codecNames = map[string]string{
	"V_VP8": string(media.CodecVP8), "V_VP9": "vp9", "A_OPUS": string(media.CodecOpus),
	"V_MPEG4/ISO/AVC": string(media.CodecH264), "A_AAC": string(media.CodecAAC),
}

// Tracks is Samples, with each track's codec as FFmpeg names it (h264,
// aac, vp8, opus; the CodecID itself when it is none of those).
func Tracks(data []byte) ([][][]byte, []string, error) {
	id, size, n, err := mkvElement(data)
	if err != nil || id != mkvEBML || size == unknownSize || size > int64(len(data)-n) {
		return nil, nil, errors.New("not a WebM stream: no EBML header")
	}
	data = data[n+int(size):]
	id, size, n, err = mkvElement(data)
	if err != nil || id != mkvSegment {
		return nil, nil, errors.New("no Segment after the EBML header")
	}
	body := data[n:]
	if size != unknownSize {
		if size > int64(len(body)) {
			return nil, nil, fmt.Errorf("segment: %w", errTruncated)
		}
		body = body[:size]
	}
	var out [][][]byte
	var codecs []string
	index := map[uint64]int{} // track number -> index in out
	frame := func(block []byte, where string) error {
		tn, track, err := mkvVint(block, false)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if len(block) < tn+3 {
			return fmt.Errorf("%s: %w", where, errTruncated)
		}
		if flags := block[tn+2]; flags&0x06 != 0 {
			return fmt.Errorf("%s: laced block (camvault writes one frame per block)", where)
		}
		i, ok := index[track]
		if !ok {
			return fmt.Errorf("%s: block for track %d, which Tracks does not declare", where, track)
		}
		out[i] = append(out[i], block[tn+3:])
		return nil
	}
	clusters := 0
	err = mkvChildren(body, func(id uint32, el []byte) error {
		switch id {
		case mkvTracks:
			if out != nil {
				return errors.New("more than one Tracks element")
			}
			out = [][][]byte{}
			return mkvChildren(el, func(id uint32, entry []byte) error {
				if id != mkvTrackEntry {
					return nil
				}
				var num uint64
				codec := ""
				err := mkvChildren(entry, func(id uint32, v []byte) error {
					switch id {
					case mkvTrackNumber:
						var err error
						num, err = mkvUint(v)
						return err
					case mkvCodecID:
						codec = string(v)
						if name, ok := codecNames[codec]; ok {
							codec = name
						}
					}
					return nil
				})
				if err != nil {
					return fmt.Errorf("track entry: %w", err)
				}
				if _, dup := index[num]; dup || num == 0 {
					return fmt.Errorf("track number %d missing or repeated", num)
				}
				index[num] = len(out)
				out = append(out, nil)
				codecs = append(codecs, codec)
				return nil
			})
		case mkvCluster:
			clusters++
			if out == nil {
				return errors.New("a Cluster before Tracks")
			}
			where := fmt.Sprintf("cluster %d", clusters)
			return mkvChildren(el, func(id uint32, b []byte) error {
				switch id {
				case mkvSimpleBlock:
					return frame(b, where)
				case mkvBlockGroup:
					return mkvChildren(b, func(id uint32, b []byte) error {
						if id == mkvBlock {
							return frame(b, where)
						}
						return nil
					})
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if out == nil {
		return nil, nil, errors.New("no Tracks element")
	}
	return out, codecs, nil
}
