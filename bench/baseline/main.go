// Command baseline is the plain RTSP recorder camvault's benchmarks compare
// with: the work the common open-source RTSP servers do to record a camera,
// and nothing more. It accepts RTSP publishers (gortsplib's server, TCP
// interleaved or UDP), depacketizes H.264, and writes each stream as
// fragmented MP4 (mediacommon's fMP4 writer) into segment files that start
// at a keyframe once the segment length has passed, with a fragment (moof
// + mdat) flushed every part length. No encryption, no hashing, no fsync,
// no catalog: the files are written with plain write calls and left to the
// page cache.
//
// It is written plainly and not slowed on purpose: it does per access unit
// what such a recorder does (DTS extraction, AVCC conversion, one sample
// per access unit), so CPU and memory per camera measured against it are a
// fair yardstick for camvault's evidence path.
//
// It prints "ready" on stdout once it listens, like `camvault serve`, and
// on SIGINT or SIGTERM closes every session (flushing its last fragment)
// and exits 0.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("rtsp", "127.0.0.1:8554", "RTSP listen address")
	dir := flag.String("dir", "recordings", "directory the segments are written under, one folder per path")
	segment := flag.Duration("segment", 2*time.Second, "segment length: a new file starts at the first keyframe after it")
	part := flag.Duration("part", time.Second, "fragment length: a moof+mdat is written to the file after it")
	flag.Parse()
	if *segment <= 0 || *part <= 0 {
		log.Fatal("baseline: --segment and --part must be positive")
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		log.Fatalf("baseline: %v", err)
	}
	s := &server{dir: *dir, segment: *segment, part: *part, logf: log.Printf}
	if err := s.start(*addr); err != nil {
		log.Fatalf("baseline: %v", err)
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	s.close()
}
