package e2e

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/pion/rtp"
)

// rtspCamera publishes a clip with gortsplib's client, frame by frame in
// real time, the way a bodycam's firmware would.
type rtspCamera struct {
	client   *gortsplib.Client
	video    *description.Media
	audio    *description.Media
	vf       *format.H264
	af       *format.MPEG4Audio
	aus      [][][]byte
	aacAUs   [][]byte
	withSPS  bool
	sendBad  bool          // interleave RTP packets carrying broken H.264 NAL units
	onlyNonI bool          // send only non-IDR pictures: a stream that never has a keyframe
	hold     chan struct{} // if set, stay connected and silent after the last frame until closed
	stop     chan struct{} // if set, closing it ends the stream early (a clean teardown)
	started  func()        // if set, called once the server accepted the stream (RECORD)
	tls      bool
}

func newRTSPCamera(t testing.TB, c *clip, withAudio bool) *rtspCamera {
	t.Helper()
	cam := &rtspCamera{aus: accessUnits(t, c.AnnexB)}
	var sps, pps []byte
	for _, n := range cam.aus[0] {
		switch h264.NALUType(n[0] & 0x1f) {
		case h264.NALUTypeSPS:
			sps = n
		case h264.NALUTypePPS:
			pps = n
		}
	}
	cam.vf = &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: sps, PPS: pps}
	cam.video = &description.Media{Type: description.MediaTypeVideo, Formats: []format.Format{cam.vf}}
	if withAudio {
		b, err := os.ReadFile(c.ADTS)
		if err != nil {
			t.Fatal(err)
		}
		var pkts mpeg4audio.ADTSPackets
		if err := pkts.Unmarshal(b); err != nil {
			t.Fatal(err)
		}
		for _, p := range pkts {
			cam.aacAUs = append(cam.aacAUs, p.AU)
		}
		cam.af = &format.MPEG4Audio{PayloadTyp: 97, SizeLength: 13, IndexLength: 3, IndexDeltaLength: 3,
			Config: &mpeg4audio.AudioSpecificConfig{Type: pkts[0].Type, SampleRate: pkts[0].SampleRate, ChannelCount: pkts[0].ChannelCount}}
		cam.audio = &description.Media{Type: description.MediaTypeAudio, Formats: []format.Format{cam.af}}
	}
	return cam
}

func (cam *rtspCamera) desc() *description.Session {
	d := &description.Session{Medias: []*description.Media{cam.video}}
	if cam.audio != nil {
		d.Medias = append(d.Medias, cam.audio)
	}
	return d
}

// run connects, streams every access unit in real time and tears down.
func (cam *rtspCamera) run(url string, transport gortsplib.Transport) error {
	cam.client = &gortsplib.Client{Transport: &transport}
	if cam.tls {
		cam.client.TLSConfig = &tls.Config{InsecureSkipVerify: true} // the test's self-signed certificate
	}
	if err := cam.client.StartRecording(url, cam.desc()); err != nil {
		return err
	}
	defer cam.client.Close()
	if cam.started != nil {
		cam.started()
	}
	venc, err := cam.vf.CreateEncoder()
	if err != nil {
		return err
	}
	var aenc interface {
		Encode([][]byte) ([]*rtp.Packet, error)
	}
	if cam.af != nil {
		e, err := cam.af.CreateEncoder()
		if err != nil {
			return err
		}
		aenc = e
	}
	start := time.Now()
	ai := 0
	var vseq uint16 = 1000
	for i, au := range cam.aus {
		if cam.onlyNonI && h264.IsRandomAccess(au) {
			continue
		}
		pts := time.Duration(i) * time.Second / 30
		if d := time.Until(start.Add(pts)); d > 0 {
			time.Sleep(d)
		}
		select {
		case <-cam.stop: // nil: never
			return nil
		default:
		}
		pkts, err := venc.Encode(au)
		if err != nil {
			return err
		}
		ts := uint32(int64(pts) * 90000 / int64(time.Second))
		for _, p := range pkts {
			p.Timestamp = ts
			p.SequenceNumber = vseq
			vseq++
			if err := cam.client.WritePacketRTP(cam.video, p); err != nil {
				return err
			}
		}
		if cam.sendBad && i%7 == 3 {
			// Broken H.264 between two good pictures: a garbage NAL unit,
			// a truncated FU-A fragment, and a replayed packet.
			for k, payload := range [][]byte{
				append([]byte{0x41}, randomBytes(300)...),              // non-IDR slice header of garbage
				append([]byte{0x7c, 0x85}, randomBytes(500)...),        // FU-A start of an IDR that never ends
				append([]byte{byte(0x80 | i%32)}, randomBytes(100)...), // forbidden bit set
				append([]byte{0x65}, randomBytes(40)...),               // "IDR" made of garbage
			} {
				bad := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: vseq, Marker: k != 1,
					Timestamp: ts + 1000 + uint32(k)*10, SSRC: pkts[0].SSRC}, Payload: payload}
				vseq++
				cam.client.WritePacketRTP(cam.video, bad)
			}
			cam.client.WritePacketRTP(cam.video, pkts[len(pkts)-1]) // replay
		}
		// Audio up to the video's time.
		for aenc != nil && ai < len(cam.aacAUs) && time.Duration(ai)*1024*time.Second/48000 <= pts {
			apkts, err := aenc.Encode([][]byte{cam.aacAUs[ai]})
			if err != nil {
				return err
			}
			for _, p := range apkts {
				p.Timestamp = uint32(ai * 1024)
				if err := cam.client.WritePacketRTP(cam.audio, p); err != nil {
					return err
				}
			}
			ai++
		}
	}
	// Let the client's write queue drain before TEARDOWN.
	time.Sleep(300 * time.Millisecond)
	if cam.hold != nil {
		<-cam.hold
	}
	return nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestGortsplibPublishWithAudio(t *testing.T) {
	c := testClip(t, 5)
	data, secrets := setupData(t, "cam1")
	s := newServer(t, data)
	cam := newRTSPCamera(t, c, true)
	if err := cam.run(s.rtspURL("cam1", secrets["cam1"], "cam1"), gortsplib.TransportTCP); err != nil {
		t.Fatalf("publish: %v\n%s", err, s.logs())
	}
	inc := waitIncidentEnded(t, s, "cam1")
	exp := checkExport(t, s, inc, c)
	// The export carries the audio too.
	out := runCmd(t, "ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", filepath.Join(exp, "incident.mp4"))
	if got := strings.Fields(string(out)); len(got) != 2 || got[0] != "h264" || got[1] != "aac" {
		t.Fatalf("export streams %q, want h264 and aac", got)
	}
}

// TestRefused: what must not get in, does not, and the server stays up.
func TestRefused(t *testing.T) {
	c := testClip(t, 5)
	data, secrets := setupData(t, "cam1", "cam2")
	s := newServer(t, data)
	cam := newRTSPCamera(t, c, false)
	cam.aus = cam.aus[:30]

	try := func(url string) error {
		cl := &gortsplib.Client{}
		defer cl.Close()
		return cl.StartRecording(url, cam.desc())
	}
	cases := map[string]struct {
		url    string
		status string
	}{
		"no credentials":       {s.rtspURL("", "", "cam1"), "401"},
		"wrong secret":         {s.rtspURL("cam1", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "cam1"), ""},
		"unknown camera":       {s.rtspURL("nosuch", secrets["cam1"], "nosuch"), ""},
		"another camera path":  {s.rtspURL("cam1", secrets["cam1"], "cam2"), "403"},
		"another camera creds": {s.rtspURL("cam2", secrets["cam2"], "cam1"), "403"},
	}
	for name, tc := range cases {
		err := try(tc.url)
		if err == nil {
			t.Errorf("%s: publish accepted", name)
			continue
		}
		if tc.status != "" && !strings.Contains(err.Error(), tc.status) {
			t.Errorf("%s: %v, want status %s", name, err, tc.status)
		}
	}
	// Reading is refused, with or without credentials.
	for _, u := range []string{s.rtspURL("", "", "cam1"), s.rtspURL("cam1", secrets["cam1"], "cam1")} {
		cl := &gortsplib.Client{}
		pu, _ := base.ParseURL(u)
		if err := cl.Start(pu.Scheme, pu.Host); err != nil {
			t.Fatal(err)
		}
		if _, _, err := cl.Describe(pu); err == nil {
			t.Errorf("DESCRIBE %s accepted", u)
		}
		cl.Close()
	}
	// ffmpeg with a wrong secret fails too.
	if err := publishFFmpeg(t, c, s.rtspURL("cam1", "wrong", "cam1"), "tcp"); err == nil {
		t.Error("ffmpeg with a wrong secret was accepted")
	}
	if n := len(incidents(t, data)); n != 0 {
		t.Fatalf("%d incidents opened by refused clients", n)
	}
	// Still up and working for the right camera.
	if err := cam.run(s.rtspURL("cam1", secrets["cam1"], "cam1"), gortsplib.TransportTCP); err != nil {
		t.Fatalf("legit publish after refusals: %v\n%s", err, s.logs())
	}
	waitIncidentEnded(t, s, "cam1")
}

func TestMalformedInput(t *testing.T) {
	c := testClip(t, 5)
	data, secrets := setupData(t, "cam1", "cam2", "cam3")
	s := newServer(t, data)
	addr := fmt.Sprintf("127.0.0.1:%d", s.rtspPort)

	// Garbage and oversized requests on the RTSP port.
	for _, junk := range [][]byte{
		[]byte("\x00\xff\x13garbage\r\n\r\n"),
		[]byte("ANNOUNCE rtsp://x/cam1 RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 99999999\r\n\r\n"),
		[]byte("OPTIONS * RTSP/1.0\r\nCSeq: x\r\n" + strings.Repeat("X-A: b\r\n", 5000) + "\r\n"),
		[]byte("$\x00\xff\xff" + strings.Repeat("A", 1000)),
	} {
		conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(3 * time.Second))
		conn.Write(junk)
		bufio.NewReader(conn).ReadString('\n')
		conn.Close()
	}

	// An SDP with no usable track: refused with 415.
	cl := &gortsplib.Client{}
	g711 := &description.Session{Medias: []*description.Media{{Type: description.MediaTypeAudio, Formats: []format.Format{&format.G711{PayloadTyp: 0, MULaw: true, SampleRate: 8000, ChannelCount: 1}}}}}
	err := cl.StartRecording(s.rtspURL("cam1", secrets["cam1"], "cam1"), g711)
	cl.Close()
	if err == nil || !strings.Contains(err.Error(), "415") {
		t.Fatalf("SDP without a usable track: %v, want 415", err)
	}

	// Broken H.264 NAL units interleaved with a good stream: the good
	// frames are all recorded, nothing is corrupted.
	cam := newRTSPCamera(t, c, false)
	cam.sendBad = true
	if err := cam.run(s.rtspURL("cam2", secrets["cam2"], "cam2"), gortsplib.TransportTCP); err != nil {
		t.Fatalf("publish with broken packets: %v", err)
	}
	inc := waitIncidentEnded(t, s, "cam2")
	if o, e, code := camvault(t, "verify", inc.ID, "--data", data, "--identity", identityPath(data)); code != 0 {
		t.Fatalf("verify: exit %d\n%s%s", code, o, e)
	}
	out := filepath.Join(t.TempDir(), "export")
	mustCamvault(t, "export", inc.ID, "--identity", identityPath(data), "--out", out, "--data", data)
	// Every good picture the camera sent is in the export, in order.
	sent, got := vclNALUs(t, c.AnnexB), vclNALUs(t, filepath.Join(out, "incident.mp4"))
	j := 0
	for _, n := range got {
		if j < len(sent) && string(n) == string(sent[j]) {
			j++
		}
	}
	if j != len(sent) {
		t.Fatalf("export holds %d of the %d good pictures sent beside broken packets\n%s", j, len(sent), s.logs())
	}

	// A stream that never sends a keyframe: no incident, the session is ended.
	nok := newRTSPCamera(t, c, false)
	nok.onlyNonI = true
	nok.run(s.rtspURL("cam3", secrets["cam3"], "cam3"), gortsplib.TransportTCP)
	for _, in := range incidents(t, data) {
		if in.Camera == "cam3" {
			t.Fatalf("an incident was opened for a stream without keyframes: %+v", in)
		}
	}
	// The server is still up.
	if !strings.Contains(s.logs(), "camera stopped before any keyframe") && !strings.Contains(s.logs(), "no H.264 keyframe") {
		t.Logf("server log:\n%s", s.logs())
	}
	if _, err := net.DialTimeout("tcp", addr, 2*time.Second); err != nil {
		t.Fatalf("server down after malformed input: %v", err)
	}
}
