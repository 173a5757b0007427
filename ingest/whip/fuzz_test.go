package whip_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"camvault/ingest/whip"
)

// FuzzWHIPOffer: whatever SDP an authenticated camera posts, the WHIP
// endpoint answers 201 with an answer, or refuses it as the client's
// fault (4xx); never a panic and never a server error, which would mean
// hostile SDP reached a path the server does not expect. An accepted
// session is deleted again, so the run holds no resources.
func FuzzWHIPOffer(f *testing.F) {
	offer := strings.ReplaceAll(noCodecOffer, "\n", "\r\n")
	f.Add(offer)
	f.Add(strings.ReplaceAll(offer, "VP9/90000", "VP8/90000"))
	f.Add(strings.ReplaceAll(strings.ReplaceAll(offer, "VP9/90000", "H264/90000"), "a=rtcp-mux", "a=rtcp-mux\r\na=fmtp:98 packetization-mode=1;profile-level-id=42e01f"))
	f.Add("v=0\r\n")
	f.Add("")
	h := startWHIP(f, whip.Config{MaxOfferBytes: 8 << 10}, &memRecorder{}).Handler()
	f.Fuzz(func(t *testing.T, sdp string) {
		req := httptest.NewRequest(http.MethodPost, "/whip/cam1", strings.NewReader(sdp))
		req.Header.Set("Authorization", "Bearer secret1")
		req.Header.Set("Content-Type", "application/sdp")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch {
		case rec.Code == http.StatusCreated:
			del := httptest.NewRequest(http.MethodDelete, rec.Header().Get("Location"), nil)
			del.Header.Set("Authorization", "Bearer secret1")
			h.ServeHTTP(httptest.NewRecorder(), del)
		case rec.Code >= 400 && rec.Code < 500:
		default:
			t.Fatalf("status %d %q for offer %q", rec.Code, rec.Body.String(), sdp)
		}
	})
}
