package redact

import (
	"context"
	"fmt"
	"io"
	"time"

	"camvault/codec"
)

// Renderer makes redacted copies; the zero value uses the export's
// encoder settings (x264 veryfast, CRF 18; AAC 96 kb/s a channel).
type Renderer struct {
	Threads int    // decoder and encoder threads; 0: FFmpeg decides
	Preset  string // x264 preset
	CRF     int    // x264 CRF
	// Hold: how long a track's box stays before its first and after its
	// last detection (default DefaultHold).
	Hold time.Duration
}

// Render writes the plan's range of the clip to w as an H.264/AAC MP4 in
// which every track not kept and every drawn box is pixelated and
// blurred, blacked-out ranges are black and muted ranges are digital
// silence. The clip is decoded, changed and encoded in memory; only w
// gets the result. Its clock starts at plan.From.
func Render(ctx context.Context, clip Clip, plan Plan, w io.Writer) error {
	return Renderer{}.Render(ctx, clip, plan, w)
}

// Render is the package's Render with r's settings.
func (r Renderer) Render(ctx context.Context, clip Clip, plan Plan, w io.Writer) error {
	if err := plan.Validate(); err != nil {
		return fmt.Errorf("render: %w", err)
	}
	hold := r.Hold
	if hold <= 0 {
		hold = DefaultHold
	}
	var blur []*Track
	for i := range plan.Tracks {
		if b, _ := plan.blurred(plan.Tracks[i].ID); b {
			blur = append(blur, &plan.Tracks[i])
		}
	}
	var boxes, blackouts, mutes []Edit
	for _, e := range plan.Edits {
		switch e.Kind {
		case EditBox:
			boxes = append(boxes, e)
		case EditBlackout:
			blackouts = append(blackouts, e)
		case EditMute:
			mutes = append(mutes, e)
		}
	}
	var scratch blurScratch
	video := func(p *codec.Picture) error {
		for _, e := range blackouts {
			if p.At >= e.From && p.At < e.To {
				blackout(p)
				return nil
			}
		}
		for _, t := range blur {
			if b, ok := t.BoxAt(p.At, hold); ok {
				scratch.obscure(p, b.grow(Margin))
			}
		}
		for _, e := range boxes {
			if p.At >= e.From && p.At < e.To {
				f := float64(p.At-e.From) / float64(e.To-e.From)
				scratch.obscure(p, lerp(e.Start, e.End, f))
			}
		}
		return nil
	}
	audio := func(s *codec.Samples) error {
		for _, e := range mutes {
			from, to := e.From-muteGuard, e.To+muteGuard
			for _, ch := range s.Channels {
				for i := range ch {
					if at := s.At + time.Duration(i)*time.Second/time.Duration(s.Rate); at >= from && at < to {
						ch[i] = 0
					}
				}
			}
		}
		return nil
	}
	rw := codec.Rewrite{From: plan.From, To: plan.To, Video: video}
	if len(mutes) > 0 {
		rw.Audio = audio
	}
	x := codec.Exporter{Threads: r.Threads, Preset: r.Preset, CRF: r.CRF}
	if err := x.RewriteMP4(ctx, clip.Media(), rw, w); err != nil {
		return fmt.Errorf("render: %w", err)
	}
	return nil
}

// blackout makes the whole picture black (limited-range Y 16, neutral
// chroma).
func blackout(p *codec.Picture) {
	fill := func(plane []byte, stride, w, h int, v byte) {
		for y := 0; y < h; y++ {
			row := plane[y*stride : y*stride+w]
			for i := range row {
				row[i] = v
			}
		}
	}
	cw, ch := (p.Width+1)/2, (p.Height+1)/2
	fill(p.Planes[0], p.Strides[0], p.Width, p.Height, 16)
	fill(p.Planes[1], p.Strides[1], cw, ch, 128)
	fill(p.Planes[2], p.Strides[2], cw, ch, 128)
}

// blurScratch holds a box's cell means, reused across pictures.
type blurScratch struct {
	grid  []int32
	lines []int32
}

// obscure makes a box of the picture unrecognisable: a mosaic of cells
// an eighth of the box's longer side, each cell reduced to its mean (what
// was inside a cell is gone, not just spread out, so no deblurring brings
// it back), drawn smoothly by interpolating bilinearly between the cells'
// centres so that the mosaic's edges add no detail of their own. Only
// pixels inside the box are read or written.
func (s *blurScratch) obscure(p *codec.Picture, b Box) {
	b = clip01(b)
	x0, y0 := int(b.X*float64(p.Width))&^1, int(b.Y*float64(p.Height))&^1
	x1, y1 := int((b.X+b.W)*float64(p.Width)+1)&^1, int((b.Y+b.H)*float64(p.Height)+1)&^1
	x1, y1 = min(x1, p.Width&^1), min(y1, p.Height&^1)
	if x1-x0 < 2 || y1-y0 < 2 {
		return
	}
	cell := max(max(x1-x0, y1-y0)/8, 2)
	s.region(p.Planes[0], p.Strides[0], x0, y0, x1, y1, cell)
	s.region(p.Planes[1], p.Strides[1], x0/2, y0/2, x1/2, y1/2, max(cell/2, 1))
	s.region(p.Planes[2], p.Strides[2], x0/2, y0/2, x1/2, y1/2, max(cell/2, 1))
}

func (s *blurScratch) region(pl []byte, stride, x0, y0, x1, y1, cell int) {
	w, h := x1-x0, y1-y0
	if w < 1 || h < 1 {
		return
	}
	gw, gh := (w+cell-1)/cell, (h+cell-1)/cell
	if cap(s.grid) < gw*gh {
		s.grid = make([]int32, gw*gh)
	}
	grid := s.grid[:gw*gh]
	for gy := 0; gy < gh; gy++ {
		cy, ey := y0+gy*cell, min(y0+(gy+1)*cell, y1)
		for gx := 0; gx < gw; gx++ {
			cx, ex := x0+gx*cell, min(x0+(gx+1)*cell, x1)
			sum := 0
			for y := cy; y < ey; y++ {
				for _, v := range pl[y*stride+cx : y*stride+ex] {
					sum += int(v)
				}
			}
			n := (ey - cy) * (ex - cx)
			grid[gy*gw+gx] = int32((sum + n/2) / n)
		}
	}
	// weights: position of a pixel between the centres of the cells on
	// either side, in 1/256, the box's edges clamped to the outer cells.
	weight := func(i, n int) (lo, hi int, f int32) {
		pos := (float64(i)+0.5)/float64(cell) - 0.5
		if pos <= 0 {
			return 0, 0, 0
		}
		lo = int(pos)
		if lo >= n-1 {
			return n - 1, n - 1, 0
		}
		return lo, lo + 1, int32((pos - float64(lo)) * 256)
	}
	// Each cell row interpolated across the box once (in 1/256), then
	// every picture row between two of those.
	if cap(s.lines) < gh*w {
		s.lines = make([]int32, gh*w)
	}
	lines := s.lines[:gh*w]
	for x := 0; x < w; x++ {
		lo, hi, fx := weight(x, gw)
		for gy := 0; gy < gh; gy++ {
			lines[gy*w+x] = grid[gy*gw+lo]*(256-fx) + grid[gy*gw+hi]*fx
		}
	}
	for y := 0; y < h; y++ {
		lo, hi, fy := weight(y, gh)
		top, bot := lines[lo*w:(lo+1)*w], lines[hi*w:(hi+1)*w]
		row := pl[(y0+y)*stride+x0 : (y0+y)*stride+x1]
		for x := range row {
			row[x] = byte((top[x]*(256-fy) + bot[x]*fy + 1<<15) >> 16)
		}
	}
}
