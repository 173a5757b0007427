package backoffice_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"camvault/backoffice"
	"camvault/internal/pgtest"
)

// BenchmarkAlertLatency publishes b.N new incidents over RTSP (a camera
// each, a few pictures) and reports how long incident.started takes from
// the first keyframe being sent to reaching an SSE client and a webhook
// receiver: p50 and p99 of each.
func BenchmarkAlertLatency(b *testing.B) {
	c := testClip(b)
	recv := &hookReceiver{}
	hs := httptest.NewServer(recv)
	defer hs.Close()
	n := startNode(b, dataDir(b), "", backoffice.Config{Webhooks: []string{hs.URL}, WebhookSecret: []byte(hookToken)})
	cl, _ := dialSSE(b, n.eventsURL(), tokAlice, "")
	secrets := make([]string, b.N)
	for i := range secrets {
		secrets[i] = n.addCamera(b, fmt.Sprintf("bench-%d", i), "officer")
	}
	var sse, hook []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cam := fmt.Sprintf("bench-%d", i)
		keyframe := n.publishAs(b, cam, secrets[i], c, 3)
		for {
			ev := cl.next(b, 10*time.Second)
			if ev.Type == "incident.started" && strings.Contains(ev.Data, `"camera":"`+cam+`"`) {
				sse = append(sse, ev.At.Sub(keyframe))
				break
			}
		}
		waitFor(b, 10*time.Second, "webhook", func() bool {
			for _, d := range recv.deliveries() {
				if d.Event == "incident.started" && strings.Contains(string(d.Body), `"camera":"`+cam+`"`) {
					hook = append(hook, d.At.Sub(keyframe))
					return true
				}
			}
			return false
		})
	}
	b.StopTimer()
	for _, m := range []struct {
		name string
		d    []time.Duration
	}{{"sse", sse}, {"webhook", hook}} {
		slices.Sort(m.d)
		b.ReportMetric(ms(quantile(m.d, 0.5)), m.name+"-p50-ms")
		b.ReportMetric(ms(quantile(m.d, 0.99)), m.name+"-p99-ms")
	}
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkAlertAcrossNodes: node A commits an alert to the shared
// PostgreSQL catalog; node B's SSE client sees it (B woken by NOTIFY). It
// reports that delay's p50 and p99.
func BenchmarkAlertAcrossNodes(b *testing.B) {
	dsn := pgtest.NewCatalog(b)
	a := openShared(b, dsn, "bench-node-a")
	nb := startPGNode(b, dsn, "bench-node-b", backoffice.Config{})
	cl, _ := dialSSE(b, nb.web.URL+"/api/v1/events", tokAlice, "")
	var lat []time.Duration
	for b.Loop() {
		t := time.Now()
		if err := a.AddAlert(context.Background(), "camera.warning", camID, "", t, nil); err != nil {
			b.Fatal(err)
		}
		ev := cl.next(b, 10*time.Second)
		lat = append(lat, ev.At.Sub(t))
	}
	slices.Sort(lat)
	b.ReportMetric(ms(quantile(lat, 0.5)), "commit-to-sse-p50-ms")
	b.ReportMetric(ms(quantile(lat, 0.99)), "commit-to-sse-p99-ms")
}
