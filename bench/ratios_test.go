package bench

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

// scripted is a side whose wall throughputs come from a list, logging
// each call so the test can see the order the sides ran in.
func scripted(name string, calls *[]string, values []float64) side {
	i := 0
	return func() (sample, error) {
		*calls = append(*calls, name)
		if i >= len(values) {
			return sample{}, errors.New(name + ": ran more often than scripted")
		}
		v := values[i]
		i++
		return sample{wall: v, perCPU: v}, nil
	}
}

// noisy is n throughputs around mean, each off by up to ±jitter of it.
func noisy(rng *rand.Rand, n int, mean, jitter float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = mean * (1 + jitter*(2*rng.Float64()-1))
	}
	return v
}

func TestMeasureRatio(t *testing.T) {
	rs := Rounds{Pairs: 7, Retries: 2}
	const floor = 0.8

	t.Run("noisy but fine passes at once", func(t *testing.T) {
		var calls []string
		// Two pairs disturbed on our side (a burst of other work): a
		// best-of or a mean would be dragged down, the median is not.
		ours := []float64{96, 50, 93, 101, 58, 97, 94}
		raw := []float64{100, 104, 97, 100, 99, 103, 98}
		r, err := rs.measure(Ratio{Name: "x"}, floor, scripted("ours", &calls, ours), scripted("raw", &calls, raw))
		if err != nil {
			t.Fatal(err)
		}
		if !r.AboveMin || r.Attempts != 1 || r.Pairs != 7 {
			t.Fatalf("ok %v after %d measurements of %d pairs, want ok after 1 of 7", r.AboveMin, r.Attempts, r.Pairs)
		}
		if r.Ratio < 0.93 || r.Ratio > 0.97 || r.Spread.Median != r.Ratio {
			t.Fatalf("ratio %.3f, spread %+v: want the median pair ratio, about 0.95", r.Ratio, r.Spread)
		}
		if r.Spread.Min > 0.49 || r.Spread.Max < 1.01 {
			t.Fatalf("spread %+v does not show the disturbed and the best pairs", r.Spread)
		}
		want := strings.Repeat("ours raw ", 7)
		if got := strings.Join(calls, " ") + " "; got != want {
			t.Fatalf("sides ran %q, want them alternating", got)
		}
	})

	t.Run("a burst below the floor is measured again", func(t *testing.T) {
		var calls []string
		// The whole first measurement lands in a burst that slows our
		// side; the second is the machine as it is.
		ours := append([]float64{70, 72, 69, 75, 71, 70, 74}, 95, 96, 94, 97, 95, 93, 96)
		raw := append([]float64{100, 100, 100, 100, 100, 100, 100}, 100, 100, 100, 100, 100, 100, 100)
		r, err := rs.measure(Ratio{Name: "x"}, floor, scripted("ours", &calls, ours), scripted("raw", &calls, raw))
		if err != nil {
			t.Fatal(err)
		}
		if !r.AboveMin || r.Attempts != 2 || r.Ratio < 0.94 || r.Ratio > 0.96 {
			t.Fatalf("ok %v, %d measurements, ratio %.3f: want ok at 0.95 on the second", r.AboveMin, r.Attempts, r.Ratio)
		}
		if len(calls) != 2*2*7 {
			t.Fatalf("%d side runs, want 28: nothing measured after the floor was met", len(calls))
		}
	})

	t.Run("consistently 25% slower fails", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		for trial := range 50 {
			var calls []string
			// The stage was at the raw primitive's speed and lost a
			// quarter: 0.75, with ±6% noise on each side of each pair.
			n := 3 * 7
			ours, raw := noisy(rng, n, 75, 0.06), noisy(rng, n, 100, 0.06)
			r, err := rs.measure(Ratio{Name: "x"}, floor, scripted("ours", &calls, ours), scripted("raw", &calls, raw))
			if err != nil {
				t.Fatal(err)
			}
			if r.AboveMin || r.Attempts != 3 {
				t.Fatalf("trial %d: ok %v after %d measurements (ratio %.3f, spread %+v): a 25%% regression must fail after 1 + 2 re-measurements",
					trial, r.AboveMin, r.Attempts, r.Ratio, r.Spread)
			}
		}
	})

	t.Run("noisy at today's speed passes", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(3, 4))
		for trial := range 50 {
			var calls []string
			// Same noise, no regression: must never fail.
			ours, raw := noisy(rng, 21, 97, 0.06), noisy(rng, 21, 100, 0.06)
			r, err := rs.measure(Ratio{Name: "x"}, floor, scripted("ours", &calls, ours), scripted("raw", &calls, raw))
			if err != nil {
				t.Fatal(err)
			}
			if !r.AboveMin {
				t.Fatalf("trial %d: failed at ratio %.3f (spread %+v) without a regression", trial, r.Ratio, r.Spread)
			}
		}
	})

	t.Run("at least MinPairs pairs", func(t *testing.T) {
		var calls []string
		ones := []float64{1, 1, 1, 1, 1}
		r, err := Rounds{Pairs: 1}.measure(Ratio{Name: "x"}, 0, scripted("ours", &calls, ones), scripted("raw", &calls, ones))
		if err != nil {
			t.Fatal(err)
		}
		if r.Pairs != MinPairs || len(calls) != 2*MinPairs || r.Ratio != 1 || !r.AboveMin {
			t.Fatalf("pairs %d, %d side runs, ratio %v, ok %v", r.Pairs, len(calls), r.Ratio, r.AboveMin)
		}
	})

	t.Run("a side's error ends the measurement", func(t *testing.T) {
		var calls []string
		_, err := rs.measure(Ratio{Name: "seal"}, floor, scripted("ours", &calls, []float64{1}), scripted("raw", &calls, []float64{1}))
		if err == nil || !strings.Contains(err.Error(), "seal") {
			t.Fatalf("err %v, want the stage named", err)
		}
		_, err = rs.measure(Ratio{Name: "seal"}, floor, scripted("ours", &calls, []float64{0}), scripted("raw", &calls, []float64{1}))
		if err == nil {
			t.Fatal("a zero throughput was taken for a measurement")
		}
	})
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		in := append([]float64(nil), tc.in...)
		if got := median(in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Fatalf("median reordered its input: %v", in)
			}
		}
	}
}
