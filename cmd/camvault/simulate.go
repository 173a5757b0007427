package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"camvault/bench"
)

// cmdSimulate runs N simulated bodycams against an RTSP server.
func cmdSimulate(args []string, stdout, stderr io.Writer) error {
	fl, data := newFlags("simulate")
	addr := fl.String("rtsp", "127.0.0.1:8554", "RTSP server host:port")
	warnings := fl.String("warnings", "", "before publishing, each camera posts its two spoken warnings to this ingest URL (e.g. http://127.0.0.1:8889)")
	preEvent := fl.Duration("pre-event", 0, "pre-event buffer each camera sends first, at 4x real time (bodycams keep 30-60 s)")
	reconnects := fl.Int("reconnects", 0, "each camera drops its connection (no teardown) and reconnects this many times")
	loss := fl.Float64("loss", 0, "WebRTC only: fraction of packets lost on the way (0.05 = 5 %), repaired by NACK where possible")
	whip := fl.String("whip", "", "publish over WebRTC instead: WHIP endpoint base URL, the camera id is appended (e.g. http://127.0.0.1:8889/whip)")
	n := fl.Int("cameras", 10, "simulated cameras")
	dur := fl.Duration("duration", 30*time.Second, "how long each camera streams")
	bitrate := fl.String("bitrate", "4M", "video bitrate of the clip (720p30 H.264, keyframe every 2 s)")
	creds := fl.String("credentials", "", `file of "ID SECRET" lines (default: register cameras sim0..simN-1 in --data)`)
	if err := noArgs(fl, args); err != nil {
		return err
	}
	var cams []bench.SimCamera
	if *creds != "" {
		f, err := os.Open(*creds)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if fs := strings.Fields(sc.Text()); len(fs) == 2 {
				cams = append(cams, bench.SimCamera{ID: fs[0], Secret: fs[1]})
			}
		}
		f.Close()
		if len(cams) > *n {
			cams = cams[:*n]
		}
	} else {
		for i := 0; i < *n; i++ {
			id := fmt.Sprintf("sim%d", i)
			secret, err := rotateCamera(context.Background(), data, id, "camvault simulate")
			if err != nil {
				if secret, err = addCamera(context.Background(), data, id, "simulated officer", "camvault simulate"); err != nil {
					return err
				}
			}
			cams = append(cams, bench.SimCamera{ID: id, Secret: secret})
		}
	}
	if len(cams) == 0 {
		return usagef("no cameras to simulate")
	}
	clip, err := bench.MakeClip(4, *bitrate)
	if err != nil {
		return err
	}
	target := *addr
	if *whip != "" {
		target = *whip
	}
	fmt.Fprintf(stderr, "simulating %d cameras at %.1f Mbit/s for %v against %s\n", len(cams), clip.Bitrate()/1e6, *dur, target)
	res := bench.Simulate(context.Background(), clip, bench.SimTarget{RTSP: *addr, WHIP: *whip, Events: *warnings, PreEvent: *preEvent,
		Reconnects: *reconnects, Loss: *loss}, cams, *dur)
	failed := 0
	for _, r := range res {
		if r.Error != "" {
			failed++
		}
	}
	if err := writeJSON(stdout, res); err != nil {
		return err
	}
	if failed > 0 {
		fmt.Fprintf(stderr, "%d of %d cameras failed\n", failed, len(cams))
		return errCheckFailed
	}
	return nil
}
