package bench

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/rtp"
)

// publishRaw streams the clip like gortsplib's client does on the wire
// (ANNOUNCE, SETUP with TCP interleaving, RECORD, then $-framed RTP), but
// writes each picture's packets with one system call, as camera firmware
// does. The load generator then costs a fraction of a real client, so on
// a 2-core machine the measurement is of camvault, not of the generator.
//
// With drop set it ends without TEARDOWN, as a camera that loses its
// network: the server sees the connection close and ends the session as
// interrupted (it still reads every byte sent, so nothing sent is lost).
func (c *Clip) publishRaw(ctx context.Context, addr, camera, secret string, d, preEvent time.Duration, drop bool) (int64, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	url := fmt.Sprintf("rtsp://%s/%s", addr, camera)
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(camera+":"+secret))
	cseq := 0
	do := func(method base.Method, u string, hdr base.Header, body []byte) (*base.Response, error) {
		cseq++
		pu, err := base.ParseURL(u)
		if err != nil {
			return nil, err
		}
		if hdr == nil {
			hdr = base.Header{}
		}
		hdr["CSeq"] = base.HeaderValue{fmt.Sprint(cseq)}
		hdr["Authorization"] = base.HeaderValue{auth}
		req := base.Request{Method: method, URL: pu, Header: hdr, Body: body}
		b, err := req.Marshal()
		if err != nil {
			return nil, err
		}
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := nc.Write(b); err != nil {
			return nil, err
		}
		var res base.Response
		if err := res.Unmarshal(br); err != nil {
			return nil, err
		}
		if res.StatusCode != base.StatusOK {
			return nil, fmt.Errorf("%s: %d %s", method, res.StatusCode, res.StatusMessage)
		}
		return &res, nil
	}
	f := &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: c.SPS, PPS: c.PPS}
	desc := &description.Session{Medias: []*description.Media{{Type: description.MediaTypeVideo, Control: "trackID=0", Formats: []format.Format{f}}}}
	sdp, err := desc.Marshal(false)
	if err != nil {
		return 0, err
	}
	if _, err := do(base.Announce, url, base.Header{"Content-Type": base.HeaderValue{"application/sdp"}}, sdp); err != nil {
		return 0, err
	}
	res, err := do(base.Setup, url+"/trackID=0", base.Header{"Transport": base.HeaderValue{"RTP/AVP/TCP;unicast;interleaved=0-1;mode=record"}}, nil)
	if err != nil {
		return 0, err
	}
	session := strings.Split(res.Header["Session"][0], ";")[0]
	if _, err := do(base.Record, url, base.Header{"Session": base.HeaderValue{session}}, nil); err != nil {
		return 0, err
	}
	nc.SetDeadline(time.Time{})
	drained := make(chan struct{})
	go func() { // RTCP receiver reports, then the TEARDOWN response
		io.Copy(io.Discard, br)
		close(drained)
	}()

	var sent int64
	var seq uint16
	buf := make([]byte, 0, 256<<10)
	p := c.pacing(d, preEvent)
	start := time.Now()
	for i := 0; i < p.total; i++ {
		select {
		case <-ctx.Done():
			return sent, ctx.Err()
		case <-time.After(time.Until(p.at(start, i))):
		}
		buf = buf[:0]
		err := c.eachPacket(i, &seq, func(pkt *rtp.Packet) error {
			n := pkt.MarshalSize()
			buf = slices.Grow(buf, 4+n)
			buf = append(buf, '$', 0, 0, 0)
			binary.BigEndian.PutUint16(buf[len(buf)-2:], uint16(n))
			buf = buf[:len(buf)+n]
			_, err := pkt.MarshalTo(buf[len(buf)-n:])
			return err
		})
		if err != nil {
			return sent, err
		}
		nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := nc.Write(buf); err != nil {
			return sent, fmt.Errorf("write frame %d: %w", i, err)
		}
		sent++
	}
	cseq++
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	if !drop {
		fmt.Fprintf(nc, "TEARDOWN %s RTSP/1.0\r\nCSeq: %d\r\nSession: %s\r\nAuthorization: %s\r\n\r\n", url, cseq, session, auth)
	}
	// Half-close and wait for the server to close: closing with unread
	// bytes would reset the connection and discard frames the server has
	// not read yet.
	nc.(*net.TCPConn).CloseWrite()
	select {
	case <-drained:
	case <-time.After(30 * time.Second):
		return sent, fmt.Errorf("server did not close the connection after TEARDOWN")
	}
	return sent, nil
}

// pacing says when each picture is sent: a bodycam keeps the last 30–60 s
// from before it was switched on and sends them first, faster than real
// time, then goes on live. Timestamps stay continuous throughout.
type pacing struct {
	frame       time.Duration
	burstFrames int // pre-event pictures, sent at burstSpeed times real time
	total       int
}

const burstSpeed = 4

func (c *Clip) pacing(live, preEvent time.Duration) pacing {
	burst := int(preEvent * time.Duration(c.FPS) / time.Second)
	return pacing{frame: time.Second / time.Duration(c.FPS), burstFrames: burst,
		total: burst + int(live*time.Duration(c.FPS)/time.Second)}
}

func (p pacing) at(start time.Time, i int) time.Time {
	if i < p.burstFrames {
		return start.Add(time.Duration(i) * p.frame / burstSpeed)
	}
	return start.Add(time.Duration(p.burstFrames)*p.frame/burstSpeed + time.Duration(i-p.burstFrames)*p.frame)
}
