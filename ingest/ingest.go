// Package ingest is the contract between the protocol servers that take
// camera streams (ingest/rtsp, ingest/whip) and the recorder behind them:
// the Recorder and Session a server hands access units to, how a session
// ends, and the one live publisher a camera may have whatever the
// protocol. It also holds the RTP handling that is not tied to one
// protocol's library: the depacketizers both servers use, so a camera's
// media becomes the same access units over either, the reorder buffer
// (WHIP's, ahead of NACK repair) and the buffered listener (RTSP's).
package ingest

import (
	"context"
	"errors"

	"camvault/camera"
	"camvault/media"
)

// How a session ended, as recorded in the incident.
const (
	EndTeardown    = "closed"      // the camera ended the stream
	EndInterrupted = "interrupted" // lost, timed out, replaced or refused mid-stream
)

// Recorder receives authenticated camera sessions.
type Recorder interface {
	// StartSession is called once the camera starts sending. tracks are
	// the session's tracks in order; media.AccessUnit.Track indexes them.
	StartSession(ctx context.Context, cam camera.Camera, tracks []media.Track, remote string) (Session, error)
}

// Admitter is a Recorder that can refuse a camera before its stream
// starts, e.g. a node short of storage that takes no new incidents. The
// protocol servers ask it once the camera is authenticated and answer a
// refusal with "service unavailable" and the error's text, which says
// why: a camera's operator reads it, and a load balancer sends the camera
// elsewhere.
type Admitter interface {
	Admit(ctx context.Context, cam camera.Camera) error
}

// Session is the Recorder's side of one ingest session.
type Session interface {
	// WriteAccessUnit is called in order per track. An error ends the
	// ingest session (e.g. a stream that never sends a keyframe).
	WriteAccessUnit(au *media.AccessUnit) error
	// Lost records that a track's media from fromPTS to toPTS (in the
	// track's clock rate, as in AccessUnit.PTS) could not be received and
	// was left out: a gap in the evidence, said so in the manifest.
	Lost(track int, fromPTS, toPTS int64, note string)
	// End is called exactly once, with EndTeardown or EndInterrupted.
	End(how string, cause error)
}

// ErrNoKeyframeReceived ends a stream that has not sent a decodable
// keyframe within the server's keyframe timeout; no incident was opened.
var ErrNoKeyframeReceived = errors.New("no H.264 keyframe received")
