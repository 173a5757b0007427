package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

// Report is what `camvault bench` prints and saves.
type Report struct {
	When    time.Time `json:"when"`
	CPU     string    `json:"cpu"`
	Cores   int       `json:"cores"`
	Go      string    `json:"go"`
	Commit  string    `json:"commit,omitempty"`
	Ratios  []Ratio   `json:"ratios"`
	Failing []string  `json:"failing,omitempty"`
	Skipped []string  `json:"skipped,omitempty"`
}

// RunRatios measures every stage ratio and checks them against the floors.
func RunRatios(workDir string, rs Rounds) (*Report, error) {
	floors, err := Floors()
	if err != nil {
		return nil, err
	}
	rep := &Report{When: time.Now().UTC(), CPU: cpuModel(), Cores: runtime.NumCPU(), Go: runtime.Version(), Commit: commit()}
	s, err := MeasureSeal(rs, floors["seal"])
	if err != nil {
		return nil, err
	}
	st, err := MeasureStore(workDir, rs, floors["store_fs"])
	if err != nil {
		return nil, err
	}
	ratios := []Ratio{s, st}
	// The proxy ratio needs the ffmpeg CLI to compare with: without it
	// the ratio is skipped, except under CI, where a missing tool fails
	// like everywhere else in camvault's tests.
	if _, err := exec.LookPath("ffmpeg"); err != nil && os.Getenv("CI") != "true" {
		rep.Skipped = append(rep.Skipped, "proxy_720p: no ffmpeg CLI to compare with")
	} else {
		p, err := MeasureProxy(workDir, rs, floors["proxy_720p"])
		if err != nil {
			return nil, err
		}
		ratios = append(ratios, p)
	}
	for _, r := range ratios {
		if !r.AboveMin {
			rep.Failing = append(rep.Failing, fmt.Sprintf("%s: ratio %.2f below its floor %.2f in each of %d measurements (last: pairs %.2f–%.2f)",
				r.Name, r.Ratio, r.Floor, r.Attempts, r.Spread.Min, r.Spread.Max))
		}
		rep.Ratios = append(rep.Ratios, r)
	}
	return rep, nil
}

// WriteMarkdown prints the report as a table.
func (r *Report) WriteMarkdown(w io.Writer) {
	fmt.Fprintf(w, "camvault bench — %s, %d cores, %s, commit %s\n\n", r.CPU, r.Cores, r.Go, r.Commit)
	fmt.Fprintln(w, "| stage | what | camvault | raw | unit | ratio (median) | pairs min / median / max | measurements | floor | camvault per CPU-s | raw per CPU-s | ratio per CPU-s |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, x := range r.Ratios {
		floor := "—"
		if x.Floor > 0 {
			floor = fmt.Sprintf("%.2f", x.Floor)
		}
		unit := x.Unit
		if unit == "" {
			unit = "MB/s"
		}
		fmt.Fprintf(w, "| %s | %s | %.0f | %.0f | %s | %.2f | %.2f / %.2f / %.2f (%d pairs) | %d | %s | %.0f | %.0f | %.2f |\n", x.Name, x.What, x.OursMBs, x.RawMBs, unit, x.Ratio,
			x.Spread.Min, x.Spread.Median, x.Spread.Max, x.Pairs, x.Attempts, floor, x.OursPerCPU, x.RawPerCPU, x.CPURatio)
	}
	for _, s := range r.Skipped {
		fmt.Fprintf(w, "\nskipped: %s\n", s)
	}
	for _, f := range r.Failing {
		fmt.Fprintf(w, "\nFAIL: %s\n", f)
	}
}

// WriteJSON saves the report.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return runtime.GOARCH
}

func commit() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	// `go run` does not stamp the revision; ask git, where there is one.
	out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
