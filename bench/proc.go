package bench

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

// cpuSeconds reads utime+stime of a process from /proc/<pid>/stat.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return math.NaN()
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clockTicks
}

// rssMiB reads VmRSS of a process.
func rssMiB(pid int) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return math.NaN()
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return math.NaN()
}

// histogram is a Prometheus histogram as scraped: cumulative counts per
// upper bound, in order.
type histogram []struct{ le, n float64 }

// scrapeHistogram reads the unlabelled histogram name from the server's
// /metrics.
func scrapeHistogram(metricsPort int, name string) (histogram, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: /metrics answered %s", name, resp.Status)
	}
	var h histogram
	sc := bufio.NewScanner(resp.Body)
	prefix := name + `_bucket{le="`
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), prefix)
		if !ok {
			continue
		}
		i := strings.Index(line, `"}`)
		le, _ := strconv.ParseFloat(line[:i], 64)
		n, _ := strconv.ParseFloat(strings.TrimSpace(line[i+2:]), 64)
		h = append(h, struct{ le, n float64 }{le, n})
	}
	if len(h) == 0 {
		return nil, fmt.Errorf("no histogram %s", name)
	}
	return h, sc.Err()
}

// since is what was observed after earlier (a scrape of the same
// histogram).
func (h histogram) since(earlier histogram) histogram {
	out := append(histogram(nil), h...)
	for i := range out {
		if i < len(earlier) {
			out[i].n -= earlier[i].n
		}
	}
	return out
}

// quantiles estimates each quantile by linear interpolation within its
// bucket, as Prometheus' histogram_quantile does.
func (h histogram) quantiles(qs ...float64) ([]time.Duration, error) {
	if len(h) == 0 || h[len(h)-1].n == 0 {
		return nil, errors.New("no observations")
	}
	total := h[len(h)-1].n
	out := make([]time.Duration, len(qs))
	for k, q := range qs {
		rank := q * total
		lo, prevN := 0.0, 0.0
		for _, b := range h {
			if b.n >= rank {
				hi := b.le
				if math.IsInf(hi, 1) {
					hi = lo
				}
				frac := 0.0
				if b.n > prevN {
					frac = (rank - prevN) / (b.n - prevN)
				}
				out[k] = time.Duration((lo + frac*(hi-lo)) * float64(time.Second))
				break
			}
			lo, prevN = b.le, b.n
		}
	}
	return out, nil
}

// latencyQuantiles scrapes a histogram and estimates its quantiles.
func latencyQuantiles(metricsPort int, name string, qs ...float64) ([]time.Duration, error) {
	h, err := scrapeHistogram(metricsPort, name)
	if err != nil {
		return nil, err
	}
	out, err := h.quantiles(qs...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// durableSamples sums the access units durable per camera (extra: e.g.
// --catalog for a node on PostgreSQL).
func durableSamples(bin, data string, extra ...string) (map[string]int64, error) {
	out, err := exec.Command(bin, append([]string{"incidents", "--json", "--data", data}, extra...)...).Output()
	if err != nil {
		return nil, fmt.Errorf("incidents: %w", err)
	}
	var rows []struct {
		Camera  string `json:"camera"`
		Samples int64  `json:"samples"`
	}
	if err := json.Unmarshal(out, &rows); err != nil {
		return nil, err
	}
	m := map[string]int64{}
	for _, r := range rows {
		m[r.Camera] += r.Samples
	}
	return m, nil
}

// scrapeGauge reads one unlabelled metric from the server.
func scrapeGauge(metricsPort int, name string) (float64, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("scrape %s: /metrics answered %s", name, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("metric %s not found", name)
}

// HistogramScrape is one scrape of a histogram, for measuring the share
// of it a run observed (the e2e tests compare runs on one server).
type HistogramScrape struct{ h histogram }

// ScrapeHistogram reads the unlabelled histogram name from a server's
// /metrics.
func ScrapeHistogram(metricsPort int, name string) (HistogramScrape, error) {
	h, err := scrapeHistogram(metricsPort, name)
	return HistogramScrape{h}, err
}

// QuantileSince estimates quantile q of what was observed between the
// earlier scrape and s.
func (s HistogramScrape) QuantileSince(earlier HistogramScrape, q float64) (time.Duration, error) {
	qs, err := s.h.since(earlier.h).quantiles(q)
	if err != nil {
		return 0, err
	}
	return qs[0], nil
}
