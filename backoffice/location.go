package backoffice

import (
	"context"
	"fmt"
	"math"
	"time"

	"camvault/catalog"
)

// locationReader is the catalog's alert outbox read per camera; the
// catalog has it, a staff store without it shows no track.
type locationReader interface {
	CameraAlerts(ctx context.Context, camera, typ string, from, to time.Time) ([]catalog.Alert, error)
}

// Track is a camera's reported locations during an incident, drawn as a
// vector picture on the incident page: no map tiles are fetched.
type Track struct {
	Points []TrackPoint `json:"points"`
	// What the page draws: the points projected into a Width x Height box,
	// and a scale bar of ScaleM metres, ScalePx long.
	Width, Height   float64 `json:"-"`
	ScaleM, ScalePx float64 `json:"-"`
	Path            string  `json:"-"`
}

// TrackPoint is one reported location; X and Y are its place in the
// drawing.
type TrackPoint struct {
	At       time.Time `json:"at"`
	Lat      float64   `json:"lat"`
	Lon      float64   `json:"lon"`
	Accuracy float64   `json:"accuracy,omitempty"`
	X        float64   `json:"-"`
	Y        float64   `json:"-"`
}

// ScaleEnd is where the scale bar, drawn from x = 12, ends.
func (t *Track) ScaleEnd() float64 { return 12 + t.ScalePx }

// Last is the latest point.
func (t *Track) Last() TrackPoint { return t.Points[len(t.Points)-1] }

const (
	trackW, trackH, trackPad = 480.0, 320.0, 24.0
	earthRadiusM             = 6371008.8
)

// track reads the camera's camera.location alerts during the incident.
func (s *Service) track(ctx context.Context, inc catalog.Incident) (*Track, error) {
	lr, ok := s.staff.(locationReader)
	if !ok {
		return nil, nil
	}
	to := time.Time{}
	if inc.EndedAt != nil {
		to = *inc.EndedAt
	}
	alerts, err := lr.CameraAlerts(ctx, inc.Camera, "camera.location", inc.StartedAt, to)
	if err != nil {
		return nil, fmt.Errorf("location track: %w", err)
	}
	t := &Track{Width: trackW, Height: trackH}
	for _, a := range alerts {
		lat, ok1 := a.Data["lat"].(float64)
		lon, ok2 := a.Data["lon"].(float64)
		if !ok1 || !ok2 {
			continue
		}
		acc, _ := a.Data["accuracy"].(float64)
		t.Points = append(t.Points, TrackPoint{At: a.At, Lat: lat, Lon: lon, Accuracy: acc})
	}
	if len(t.Points) == 0 {
		return nil, nil
	}
	t.project()
	return t, nil
}

// project places the points in the drawing: an equirectangular
// projection about the track's middle latitude (exact enough over the
// few kilometres an incident covers), the same scale on both axes, north
// up, and a scale bar of a round number of metres.
func (t *Track) project() {
	minLat, maxLat, minLon, maxLon := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, p := range t.Points {
		minLat, maxLat = math.Min(minLat, p.Lat), math.Max(maxLat, p.Lat)
		minLon, maxLon = math.Min(minLon, p.Lon), math.Max(maxLon, p.Lon)
	}
	rad := math.Pi / 180
	kx := earthRadiusM * rad * math.Cos((minLat+maxLat)/2*rad) // metres per degree of longitude
	ky := earthRadiusM * rad
	spanX, spanY := (maxLon-minLon)*kx, (maxLat-minLat)*ky
	// At least 100 m across, so one point or a standing officer is drawn
	// at a sensible scale.
	span := math.Max(math.Max(spanX, spanY), 100)
	pxPerM := math.Min((trackW-2*trackPad)/span, (trackH-2*trackPad)/span)
	cx, cy := (minLon+maxLon)/2, (minLat+maxLat)/2
	path := ""
	for i := range t.Points {
		p := &t.Points[i]
		p.X = trackW/2 + (p.Lon-cx)*kx*pxPerM
		p.Y = trackH/2 - (p.Lat-cy)*ky*pxPerM
		cmd := "L"
		if i == 0 {
			cmd = "M"
		}
		path += fmt.Sprintf("%s%.1f %.1f ", cmd, p.X, p.Y)
	}
	t.Path = path
	// The largest 1, 2 or 5 x 10^n metres no longer than a quarter of the width.
	maxM := trackW / 4 / pxPerM
	m := math.Pow(10, math.Floor(math.Log10(maxM)))
	for _, f := range []float64{5, 2, 1} {
		if f*m <= maxM {
			m *= f
			break
		}
	}
	t.ScaleM, t.ScalePx = m, m*pxPerM
}
