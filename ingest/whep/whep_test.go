package whep

import (
	"crypto/ed25519"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"camvault/ingest"
	"camvault/livegrant"
)

const offerFP = "sha-256 " + "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89"

// The ingest node's refusals, before any peer connection is made: each
// answers its code and leaves no view open.
func TestRefusals(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	_, other, _ := ed25519.GenerateKey(nil)
	now := time.Unix(1_800_000_000, 0)
	clock := now
	feeds := ingest.NewFeeds()
	s := New(Config{Feeds: feeds, Key: pub, Now: func() time.Time { return clock }}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	mux := http.NewServeMux()
	s.Register(mux)
	grant := func(camera, fp string, key ed25519.PrivateKey) string {
		g, err := livegrant.New("ann", "operator", "inc1", camera, "why", now, time.Minute, 10*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		g.Fingerprint = strings.ToLower(fp)
		tok, err := livegrant.Sign(key, g)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	post := func(camera, tok, fp string) int {
		offer := "v=0\r\na=fingerprint:" + fp + "\r\n"
		r := httptest.NewRequest("POST", "/whep/"+camera, strings.NewReader(offer))
		r.Header.Set("Content-Type", "application/sdp")
		if tok != "" {
			r.Header.Set("Authorization", "Bearer "+tok)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		return w.Code
	}
	notLive := grant("cam1", "", priv)
	bound := grant("cam1", offerFP, priv)
	late := grant("cam1", "", priv)
	for _, tc := range []struct {
		name, camera, tok, fp string
		advance               time.Duration
		want                  int
	}{
		{"no grant", "cam1", "", offerFP, 0, http.StatusUnauthorized},
		{"garbage", "cam1", "cvlg1.xx.yy", offerFP, 0, http.StatusUnauthorized},
		{"forged", "cam1", grant("cam1", "", other), offerFP, 0, http.StatusUnauthorized},
		{"other camera", "cam2", grant("cam1", "", priv), offerFP, 0, http.StatusForbidden},
		{"other viewer's connection", "cam1", bound, strings.Replace(offerFP, "AB", "00", 1), 0, http.StatusForbidden},
		{"camera not recording", "cam1", notLive, offerFP, 0, http.StatusNotFound},
		{"reused", "cam1", notLive, offerFP, 0, http.StatusForbidden},
		{"expired", "cam1", late, offerFP, time.Minute, http.StatusUnauthorized},
	} {
		clock = now.Add(tc.advance)
		if got := post(tc.camera, tc.tok, tc.fp); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	if s.Open() != 0 || s.Opened.Load() != 0 {
		t.Fatalf("%d views open after refusals", s.Open())
	}
	if int(s.Refused.Load()) != 8 {
		t.Fatalf("refused %d", s.Refused.Load())
	}
}

func TestKeyframeStart(t *testing.T) {
	for _, tc := range []struct {
		mime string
		p    []byte
		want bool
	}{
		{"video/H264", []byte{0x65, 1}, true},                         // IDR
		{"video/H264", []byte{0x41, 1}, false},                        // non-IDR
		{"video/H264", []byte{0x67, 1}, true},                         // SPS
		{"video/H264", []byte{0x78, 0, 2, 0x67, 1, 0, 1, 0x68}, true}, // STAP-A with SPS
		{"video/H264", []byte{0x78, 0, 2, 0x41, 1}, false},
		{"video/H264", []byte{0x7c, 0x85, 1}, true},  // FU-A start of IDR
		{"video/H264", []byte{0x7c, 0x05, 1}, false}, // FU-A middle
		{"video/H264", []byte{0x78, 0, 9}, false},    // STAP-A cut short
		{"video/H264", nil, false},
		{"video/VP8", []byte{0x10, 0x00}, true},                   // S, PID 0, P clear
		{"video/VP8", []byte{0x10, 0x01}, false},                  // interframe
		{"video/VP8", []byte{0x00, 0x00}, false},                  // not a start
		{"video/VP8", []byte{0x90, 0x80, 0x81, 0x02, 0x00}, true}, // X, I with a two-byte picture id
		{"video/VP8", []byte{0x90, 0x80}, false},
		{"audio/opus", []byte{1}, true},
	} {
		if got := KeyframeStart(tc.mime, tc.p); got != tc.want {
			t.Errorf("%s %x: %v", tc.mime, tc.p, got)
		}
	}
}
