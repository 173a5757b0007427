package ingest

import (
	"bufio"
	"net"
)

// readBufferSize is the read buffer per RTSP connection. gortsplib reads
// through a 4 KiB buffer, about three RTP packets, so a 4 Mbit/s camera
// costs hundreds of read system calls per second; a larger buffer below
// it takes a whole frame's burst of interleaved packets in one call.
const readBufferSize = 32 << 10

// bufferedListener gives every accepted connection a larger read buffer.
type bufferedListener struct{ net.Listener }

func (l bufferedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &bufferedConn{Conn: c, r: bufio.NewReaderSize(c, readBufferSize)}, nil
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// ListenBuffered listens like net.Listen; every connection it accepts
// reads through a buffer of readBufferSize.
func ListenBuffered(network, address string) (net.Listener, error) {
	l, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	return bufferedListener{l}, nil
}
