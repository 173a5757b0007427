package redact

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"image"
	"image/jpeg"
	"runtime"
	"sort"
	"sync"
	"time"

	pigo "github.com/esimov/pigo/core"

	"camvault/codec"
)

// facefinder is pigo's face cascade (cascade/README.md): built in, so
// detection downloads nothing.
//
//go:embed cascade/facefinder
var facefinder []byte

// DetectOptions configures Detect; the zero value uses the defaults.
type DetectOptions struct {
	// Every: look at every Nth picture (default 5); the tracks are
	// interpolated between.
	Every int
	// MinSize and MaxSize: the smallest and largest face looked for, in
	// pixels of the picture's shorter side (defaults 32 and that side).
	MinSize, MaxSize int
	// MinScore: detections the cascade is less sure of are dropped
	// (default 5, pigo's usual threshold).
	MinScore float64
	// MatchIoU: a detection continues a track when it overlaps the
	// track's last box by at least this (default 0.2).
	MatchIoU float64
	// MaxGap: a track not seen for longer ends (default 1 s).
	MaxGap time.Duration
	// Threads: the decoder's threads (0: FFmpeg decides).
	Threads int
	// Workers: pictures searched at once (default GOMAXPROCS); each
	// holds a copy of one picture in memory.
	Workers int
}

func (o *DetectOptions) defaults() {
	if o.Every <= 0 {
		o.Every = 5
	}
	if o.MinSize <= 0 {
		o.MinSize = 32
	}
	if o.MinScore <= 0 {
		o.MinScore = 5
	}
	if o.MatchIoU <= 0 {
		o.MatchIoU = 0.2
	}
	if o.MaxGap <= 0 {
		o.MaxGap = time.Second
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
}

// Detector finds faces in pictures; it holds the unpacked cascade and is
// safe for concurrent use.
type Detector struct {
	cascade *pigo.Pigo
}

// NewDetector unpacks the built-in cascade.
func NewDetector() (*Detector, error) {
	p, err := pigo.NewPigo().Unpack(facefinder)
	if err != nil {
		return nil, fmt.Errorf("face cascade: %w", err)
	}
	return &Detector{cascade: p}, nil
}

// Faces finds the faces in one grey picture (rows of stride bytes), with
// o's sizes and threshold (o.defaults() applied).
func (d *Detector) Faces(grey []byte, width, height, stride int, o DetectOptions) []Detection {
	o.defaults()
	if width < 8 || height < 8 || stride < width || len(grey) < stride*(height-1)+width {
		return nil
	}
	maxSize := o.MaxSize
	if short := min(width, height); maxSize <= 0 || maxSize > short {
		maxSize = short
	}
	params := pigo.CascadeParams{
		MinSize: o.MinSize, MaxSize: maxSize, ShiftFactor: 0.1, ScaleFactor: 1.1,
		ImageParams: pigo.ImageParams{Pixels: grey, Rows: height, Cols: width, Dim: stride},
	}
	raw := d.cascade.RunCascade(params, 0)
	raw = d.cascade.ClusterDetections(raw, 0.2)
	var found []Detection
	for _, r := range raw {
		if float64(r.Q) < o.MinScore {
			continue
		}
		s := float64(r.Scale)
		b := Box{X: (float64(r.Col) - s/2) / float64(width), Y: (float64(r.Row) - s/2) / float64(height),
			W: s / float64(width), H: s / float64(height)}
		found = append(found, Detection{Box: clip01(b), Score: float64(r.Q)})
	}
	return suppress(found)
}

// suppress keeps the surest of detections that are the same face: pigo's
// clustering leaves neighbouring windows of one face apart when their
// overlap is just under its threshold, which would make two tracks.
func suppress(found []Detection) []Detection {
	sort.Slice(found, func(i, j int) bool { return found[i].Score > found[j].Score })
	var out []Detection
	for _, d := range found {
		same := false
		cx, cy := d.Box.X+d.Box.W/2, d.Box.Y+d.Box.H/2
		for _, k := range out {
			inside := cx >= k.Box.X && cx <= k.Box.X+k.Box.W && cy >= k.Box.Y && cy <= k.Box.Y+k.Box.H
			if inside || IoU(d.Box, k.Box) > 0.3 {
				same = true
				break
			}
		}
		if !same {
			out = append(out, d)
		}
	}
	return out
}

// clip01 keeps a box inside the picture.
func clip01(b Box) Box {
	x0, y0 := max(0, b.X), max(0, b.Y)
	x1, y1 := min(1, b.X+b.W), min(1, b.Y+b.H)
	return Box{x0, y0, max(0, x1-x0), max(0, y1-y0)}
}

// Detect finds the faces in the clip's pictures (every opts.Every-th) and
// groups them into tracks: a detection continues the open track whose
// last box it overlaps most (at least opts.MatchIoU), or starts a new
// one. Each track gets a thumbnail of its surest detection. Pictures are
// searched by opts.Workers goroutines, each on its own copy, in memory.
func Detect(ctx context.Context, clip Clip, opts DetectOptions) ([]Track, error) {
	opts.defaults()
	d, err := NewDetector()
	if err != nil {
		return nil, err
	}
	tr := &tracker{opts: opts}
	if opts.Workers == 1 {
		err = codec.Pictures(ctx, clip.Media(), opts.Every, opts.Threads, func(p *codec.Picture) error {
			tr.add(p, d.faces(p, opts))
			return nil
		})
	} else {
		err = detectParallel(ctx, clip, d, tr, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("detect: %w", err)
	}
	return tr.tracks()
}

func (d *Detector) faces(p *codec.Picture, opts DetectOptions) []Detection {
	found := d.Faces(p.Planes[0], p.Width, p.Height, p.Strides[0], opts)
	for i := range found {
		found[i].At = p.At
	}
	return found
}

// job is one picture copied out of FFmpeg's memory for a worker, and
// what the worker found in it.
type job struct {
	seq   int
	pic   codec.Picture
	found []Detection
	done  chan struct{}
}

// detectParallel searches pictures on several workers and hands them to
// the tracker in order: a bounded window of pictures in flight.
func detectParallel(ctx context.Context, clip Clip, d *Detector, tr *tracker, opts DetectOptions) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan *job)
	inOrder := make(chan *job, opts.Workers)
	free := make(chan *job, 2*opts.Workers)
	for range 2 * opts.Workers {
		free <- &job{done: make(chan struct{}, 1)}
	}
	var wg sync.WaitGroup
	for range opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				j.found = d.faces(&j.pic, opts)
				j.done <- struct{}{}
			}
		}()
	}
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for j := range inOrder {
			<-j.done
			tr.add(&j.pic, j.found)
			free <- j
		}
	}()
	seq := 0
	err := codec.Pictures(ctx, clip.Media(), opts.Every, opts.Threads, func(p *codec.Picture) error {
		var j *job
		select {
		case j = <-free:
		case <-ctx.Done():
			return ctx.Err()
		}
		j.seq, j.found = seq, nil
		seq++
		copyPicture(&j.pic, p)
		inOrder <- j
		work <- j
		return nil
	})
	close(work)
	wg.Wait()
	close(inOrder)
	<-collected
	return err
}

// copyPicture copies src into dst's own memory, reusing dst's buffers.
func copyPicture(dst, src *codec.Picture) {
	dst.At, dst.Width, dst.Height = src.At, src.Width, src.Height
	rows := [3]int{src.Height, (src.Height + 1) / 2, (src.Height + 1) / 2}
	cols := [3]int{src.Width, (src.Width + 1) / 2, (src.Width + 1) / 2}
	for i := range 3 {
		n := rows[i] * cols[i]
		if cap(dst.Planes[i]) < n {
			dst.Planes[i] = make([]byte, n)
		}
		dst.Planes[i] = dst.Planes[i][:n]
		dst.Strides[i] = cols[i]
		for y := range rows[i] {
			copy(dst.Planes[i][y*cols[i]:(y+1)*cols[i]], src.Planes[i][y*src.Strides[i]:])
		}
	}
}

// tracker groups detections into tracks as the pictures go by.
type tracker struct {
	opts   DetectOptions
	all    []*building
	nextID int
}

type building struct {
	Track
	best  float64
	thumb *image.YCbCr // a copy of the surest detection's face
}

func (t *tracker) add(p *codec.Picture, found []Detection) {
	// Open tracks, matched greedily: the best-overlapping pair first.
	var open []*building
	for _, b := range t.all {
		if p.At-b.Last() <= t.opts.MaxGap {
			open = append(open, b)
		}
	}
	type pair struct {
		iou  float64
		d, b int
	}
	var pairs []pair
	for i, d := range found {
		for j, b := range open {
			if iou := IoU(d.Box, b.Detections[len(b.Detections)-1].Box); iou >= t.opts.MatchIoU {
				pairs = append(pairs, pair{iou, i, j})
			}
		}
	}
	sort.Slice(pairs, func(i, j int) bool { return pairs[i].iou > pairs[j].iou })
	usedD, usedB := map[int]bool{}, map[int]bool{}
	assign := make([]*building, len(found))
	for _, pr := range pairs {
		if usedD[pr.d] || usedB[pr.b] {
			continue
		}
		usedD[pr.d], usedB[pr.b] = true, true
		assign[pr.d] = open[pr.b]
	}
	for i, d := range found {
		b := assign[i]
		if b == nil {
			t.nextID++
			b = &building{Track: Track{ID: t.nextID}, best: -1}
			t.all = append(t.all, b)
		}
		b.Detections = append(b.Detections, d)
		if d.Score > b.best {
			b.best = d.Score
			b.thumb = crop(p, d.Box.grow(Margin))
		}
	}
}

// crop copies a box of the picture out of FFmpeg's memory.
func crop(p *codec.Picture, b Box) *image.YCbCr {
	x0, y0 := int(b.X*float64(p.Width))&^1, int(b.Y*float64(p.Height))&^1
	x1, y1 := min(p.Width, int((b.X+b.W)*float64(p.Width))), min(p.Height, int((b.Y+b.H)*float64(p.Height)))
	w, h := x1-x0, y1-y0
	if w < 2 || h < 2 {
		return nil
	}
	img := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	for y := 0; y < h; y++ {
		copy(img.Y[y*img.YStride:y*img.YStride+w], p.Planes[0][(y0+y)*p.Strides[0]+x0:])
	}
	cw, ch := (w+1)/2, (h+1)/2
	for y := 0; y < ch; y++ {
		sy := (y0/2 + y) * p.Strides[1]
		copy(img.Cb[y*img.CStride:y*img.CStride+cw], p.Planes[1][sy+x0/2:])
		sy = (y0/2 + y) * p.Strides[2]
		copy(img.Cr[y*img.CStride:y*img.CStride+cw], p.Planes[2][sy+x0/2:])
	}
	return img
}

func (t *tracker) tracks() ([]Track, error) {
	out := make([]Track, 0, len(t.all))
	for _, b := range t.all {
		if b.thumb != nil {
			var buf bytes.Buffer
			if err := jpeg.Encode(&buf, b.thumb, &jpeg.Options{Quality: 85}); err != nil {
				return nil, fmt.Errorf("detect: thumbnail of track %d: %w", b.ID, err)
			}
			b.Thumb = buf.Bytes()
		}
		out = append(out, b.Track)
	}
	return out, nil
}
