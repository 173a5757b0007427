package redact

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"image"
	"os"
	"path/filepath"
	"testing"
	"time"

	"camvault/format/redaction"
)

// covers reports whether some detection of the track has its centre
// inside r (in pixels of a clipW×clipH picture).
func covers(tr *Track, r image.Rectangle) bool {
	for _, d := range tr.Detections {
		c := image.Pt(int((d.Box.X+d.Box.W/2)*clipW), int((d.Box.Y+d.Box.H/2)*clipH))
		if c.In(r) {
			return true
		}
	}
	return false
}

func TestDetectFindsTheFaces(t *testing.T) {
	for _, vp8 := range []bool{false, true} {
		name := map[bool]string{false: "h264", true: "vp8"}[vp8]
		t.Run(name, func(t *testing.T) {
			clip := Memory(makeClip(t, vp8, true, 2, "1280x720"))
			tracks, err := Detect(context.Background(), clip, DetectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			// Two faces pasted (the photograph has one, counted by hand).
			if len(tracks) < 2 {
				t.Fatalf("%d tracks, want at least 2: %+v", len(tracks), tracks)
			}
			for i, r := range faceRects {
				found := false
				for k := range tracks {
					if covers(&tracks[k], r) {
						found = true
						// The face is there all along: one track follows
						// it over the clip, sampled every 5th picture.
						if n := len(tracks[k].Detections); n < 8 {
							t.Errorf("face %d: track %d has %d detections over 60 pictures", i, tracks[k].ID, n)
						}
						if !bytes.HasPrefix(tracks[k].Thumb, []byte{0xff, 0xd8}) {
							t.Errorf("face %d: track %d thumbnail is not a JPEG", i, tracks[k].ID)
						}
					}
				}
				if !found {
					t.Errorf("no track at face %d (%v): %+v", i, r, tracks)
				}
			}
		})
	}
}

func TestDetectTestPatternHasNoFaces(t *testing.T) {
	clip := Memory(makeClip(t, false, false, 2, "1280x720"))
	tracks, err := Detect(context.Background(), clip, DetectOptions{Every: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(tracks) != 0 {
		t.Fatalf("the test pattern has no face, got %d tracks: %+v", len(tracks), tracks[0].Detections[:1])
	}
}

func TestDetectRefusesGarbage(t *testing.T) {
	for _, in := range [][]byte{nil, []byte("not a video"), bytes.Repeat([]byte{0, 0, 0, 8, 'f', 't', 'y', 'p'}, 10)} {
		if _, err := Detect(context.Background(), Memory(in), DetectOptions{}); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

func TestRenderBlursMutesAndKeepsTheRest(t *testing.T) {
	for _, vp8 := range []bool{false, true} {
		name := map[bool]string{false: "h264", true: "vp8"}[vp8]
		t.Run(name, func(t *testing.T) {
			media := makeClip(t, vp8, true, 3, "1280x720")
			clip := Memory(media)
			tracks, err := Detect(context.Background(), clip, DetectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			plan := Plan{From: 500 * time.Millisecond, To: 2500 * time.Millisecond, Tracks: tracks,
				Edits: []Edit{{Kind: EditMute, From: time.Second, To: 1500 * time.Millisecond, Reason: "a bystander's name"}}}
			var out bytes.Buffer
			if err := Render(context.Background(), clip, plan, &out); err != nil {
				t.Fatal(err)
			}
			orig, red := pictures(t, media), pictures(t, out.Bytes())
			if len(red) < 55 || len(red) > 61 {
				t.Fatalf("%d pictures in a 2 s range of a 30 fps clip", len(red))
			}
			// The original picture shown at a time (timestamps rounded
			// to the stream's time base on the way through).
			byTime := func(at time.Duration) *grey {
				for i := range orig {
					if d := orig[i].at - at; d > -2*time.Millisecond && d < 2*time.Millisecond {
						return &orig[i]
					}
				}
				return nil
			}
			checked, worstDrop, worstPSNR := 0, 1.0, 1000.0
			for i := range red {
				r := &red[i]
				o := byTime(plan.From + r.at)
				if o == nil {
					t.Fatalf("redacted picture at %v has no original at %v", r.at, plan.From+r.at)
				}
				var skip []image.Rectangle
				for k := range tracks {
					if b, ok := tracks[k].BoxAt(o.at, DefaultHold); ok {
						skip = append(skip, pixels(b.grow(Margin), clipW, clipH).Inset(-8))
					}
				}
				for f, fr := range faceRects {
					// The inner part of the face: eyes, nose, mouth.
					inner := fr.Inset(50)
					before, after := laplacianVariance(o, inner), laplacianVariance(r, inner)
					worstDrop = min(worstDrop, 1-after/before)
					if after > 0.1*before {
						t.Errorf("picture %v face %d: Laplacian variance %.1f → %.1f, want a drop of ≥ 90%%", r.at, f, before, after)
					}
				}
				p := psnrOutside(o, r, skip)
				worstPSNR = min(worstPSNR, p)
				if p < 35 {
					t.Errorf("picture %v: PSNR %.1f dB outside the blurred boxes, want ≥ 35", r.at, p)
				}
				checked++
			}
			if t.Failed() {
				return
			}
			// Sound: silent in the muted range (1 s to 1.5 s of the clip,
			// 0.5 s to 1 s of the copy), not silent elsewhere.
			path := filepath.Join(t.TempDir(), "redacted.mp4")
			if err := os.WriteFile(path, out.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			s := audioSamples(t, path)
			if len(s) < 90000 {
				t.Fatalf("%d audio samples in 2 s", len(s))
			}
			rms := func(from, to float64) (float64, int) {
				var sum float64
				nonzero := 0
				a, b := int(from*48000), int(to*48000)
				for _, v := range s[a:b] {
					sum += float64(v) * float64(v)
					if v != 0 {
						nonzero++
					}
				}
				return sum / float64(b-a), nonzero
			}
			if _, nz := rms(0.5, 1.0); nz != 0 {
				t.Errorf("muted range: %d samples not digital silence", nz)
			}
			if p, _ := rms(0.1, 0.4); p < 0.001 { // the test tone's power is 0.0078
				t.Errorf("the sound before the mute is gone too (power %g)", p)
			}
			if p, _ := rms(1.1, 1.9); p < 0.001 { // the test tone's power is 0.0078
				t.Errorf("the sound after the mute is gone too (power %g)", p)
			}
			t.Logf("%d pictures checked: Laplacian variance in the faces down by at least %.1f%%, PSNR outside the boxes at least %.1f dB",
				checked, 100*worstDrop, worstPSNR)
		})
	}
}

func TestRenderBlackoutAndDrawnBox(t *testing.T) {
	media := makeClip(t, false, false, 2, "640x360")
	box := Box{X: 0.1, Y: 0.1, W: 0.3, H: 0.4}
	plan := Plan{Edits: []Edit{
		{Kind: EditBlackout, From: 0, To: 500 * time.Millisecond, Reason: "a child's face"},
		{Kind: EditBox, From: 500 * time.Millisecond, To: 2 * time.Second, Start: box, End: box, Reason: "a number plate"},
	}}
	var out bytes.Buffer
	if err := Render(context.Background(), Memory(media), plan, &out); err != nil {
		t.Fatal(err)
	}
	orig, red := pictures(t, media), pictures(t, out.Bytes())
	if len(red) != len(orig) {
		t.Fatalf("%d pictures, the original has %d", len(red), len(orig))
	}
	r := pixels(box, 640, 360).Inset(4)
	for i := range red {
		p := &red[i]
		if p.at < 500*time.Millisecond {
			for _, v := range p.pix {
				if v > 20 {
					t.Fatalf("picture %v in the blackout has luma %d", p.at, v)
				}
			}
			continue
		}
		if before, after := laplacianVariance(&orig[i], r), laplacianVariance(p, r); after > 0.1*before {
			t.Errorf("picture %v: drawn box Laplacian variance %.1f → %.1f", p.at, before, after)
		}
	}
}

func TestPlanValidate(t *testing.T) {
	tr := Track{ID: 1, Detections: []Detection{{Box: Box{0.1, 0.1, 0.2, 0.2}}}}
	bad := []Plan{
		{From: 2 * time.Second, To: time.Second},
		{Tracks: []Track{tr}, Edits: []Edit{{Kind: EditTrack, Track: 1, Keep: true}}},                                        // no reason
		{Tracks: []Track{tr}, Edits: []Edit{{Kind: EditTrack, Track: 2, Keep: true, Reason: "x"}}},                           // no such track
		{Edits: []Edit{{Kind: EditMute, From: time.Second, To: time.Second, Reason: "x"}}},                                   // empty range
		{Edits: []Edit{{Kind: EditBox, To: time.Second, Start: Box{0.9, 0.9, 0.5, 0.5}, End: Box{0, 0, 1, 1}, Reason: "x"}}}, // outside
		{Edits: []Edit{{Kind: "smudge", To: time.Second, Reason: "x"}}},
	}
	for i, p := range bad {
		if err := p.Validate(); err == nil {
			t.Errorf("plan %d: no error", i)
		}
		if err := Render(context.Background(), Memory(nil), p, &bytes.Buffer{}); err == nil {
			t.Errorf("plan %d: rendered", i)
		}
	}
}

func TestBoxAtInterpolates(t *testing.T) {
	tr := Track{ID: 1, Detections: []Detection{
		{At: time.Second, Box: Box{0.1, 0.1, 0.2, 0.2}},
		{At: 2 * time.Second, Box: Box{0.3, 0.1, 0.2, 0.2}},
	}}
	if b, ok := tr.BoxAt(1500*time.Millisecond, 0); !ok || b.X < 0.199 || b.X > 0.201 {
		t.Errorf("half way: %+v %v", b, ok)
	}
	if _, ok := tr.BoxAt(500*time.Millisecond, 400*time.Millisecond); ok {
		t.Error("a box 500 ms before the first detection, held 400 ms")
	}
	if b, ok := tr.BoxAt(2300*time.Millisecond, 400*time.Millisecond); !ok || b != tr.Detections[1].Box {
		t.Errorf("held after the last: %+v %v", b, ok)
	}
}

func TestReportSignVerify(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(nil)
	tr := Track{ID: 1, Detections: []Detection{{At: time.Second, Box: Box{0.1, 0.2, 0.3, 0.4}, Score: 9}}}
	tr2 := Track{ID: 2, Detections: []Detection{{At: time.Second, Box: Box{0.5, 0.2, 0.1, 0.1}, Score: 7}}}
	plan := Plan{From: 0, To: 5 * time.Second, Tracks: []Track{tr, tr2}, Edits: []Edit{
		{Kind: EditTrack, Track: 1, Keep: true, Reason: "the requester"},
		{Kind: EditMute, From: time.Second, To: 2 * time.Second, Reason: "a bystander's name"},
	}}
	rep := plan.Report()
	rep.Incident, rep.Session, rep.Reference, rep.Reason = "inc-1", "s-1", "SAR-2026-17", "subject access request"
	rep.Chunks = []redaction.Chunk{{Seq: 0, Object: "o/0", CipherSHA256: "aa", PlainSHA256: "bb"}}
	rep.RequestedBy, rep.ApprovedBy = "alice", "bob"
	rep.RequestedAt = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	rep.ApprovedAt, rep.RenderedAt = rep.RequestedAt.Add(time.Hour), rep.RequestedAt.Add(2*time.Hour)
	rep.Output = redaction.File{Name: "redacted.mp4", Size: 10, SHA256: "cc"}
	if rep.Tracks[0].Decision != redaction.DecisionKeep || rep.Tracks[1].Decision != redaction.DecisionBlur {
		t.Fatalf("decisions: %+v", rep.Tracks)
	}
	if len(rep.Edits) != 1 || rep.Edits[0].Decision != redaction.DecisionMute {
		t.Fatalf("edits: %+v", rep.Edits)
	}
	if err := rep.Sign(key); err != nil {
		t.Fatal(err)
	}
	data, err := rep.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := redaction.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := got.Verify(pub); err != nil {
		t.Fatalf("verify: %v", err)
	}
	other, _, _ := ed25519.GenerateKey(nil)
	if err := got.Verify(other); !errors.Is(err, redaction.ErrBadSignature) {
		t.Errorf("another key: %v", err)
	}
	// A changed decision, still in canonical form, fails the signature.
	changed := bytes.Replace(data, []byte(`"decision":"blur"`), []byte(`"decision":"keep"`), 1)
	if bytes.Equal(changed, data) {
		t.Fatal("nothing to change")
	}
	if c, err := redaction.Parse(changed); err != nil {
		t.Fatalf("parse changed: %v", err)
	} else if err := c.Verify(pub); !errors.Is(err, redaction.ErrBadSignature) {
		t.Errorf("changed decision: %v", err)
	}
	// An added field or another encoding is refused before the signature.
	for _, bad := range [][]byte{
		bytes.Replace(data, []byte(`{"version":1,`), []byte(`{"version":1,"extra":true,`), 1),
		bytes.Replace(data, []byte(`,"incident"`), []byte(`, "incident"`), 1),
		[]byte("{"), nil,
	} {
		if _, err := redaction.Parse(bad); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
}

// TestNothingDecryptedOnDisk: detection and rendering write nothing but
// the output they are given: the temporary directory and the working
// directory stay empty (the fixture is made before either is watched).
func TestNothingDecryptedOnDisk(t *testing.T) {
	media := makeClip(t, false, true, 1, "640x360")
	tmp, work := t.TempDir(), t.TempDir()
	t.Setenv("TMPDIR", tmp)
	t.Chdir(work)
	tracks, err := Detect(context.Background(), Memory(media), DetectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Render(context.Background(), Memory(media), Plan{Tracks: tracks}, &out); err != nil {
		t.Fatal(err)
	}
	if out.Len() == 0 {
		t.Fatal("no output")
	}
	for _, dir := range []string{tmp, work} {
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("%s holds %v after detection and rendering", dir, ents)
		}
	}
}
