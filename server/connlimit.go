package server

import (
	"net"
	"sync"
)

// LimitConnections wraps an API listener so that one source (an IPv4
// address or an IPv6 /64) holds at most perSource open connections: a
// connection over the bound is closed as soon as it is accepted, before a
// TLS handshake or a byte of it is read, so a single source cannot take
// every file descriptor or every stream the server has. perSource <= 0
// returns l unchanged.
func LimitConnections(l net.Listener, perSource int) net.Listener {
	if perSource <= 0 {
		return l
	}
	return &sourceLimitedListener{Listener: l, perSource: perSource, open: map[string]int{}}
}

type sourceLimitedListener struct {
	net.Listener
	perSource int

	mu   sync.Mutex
	open map[string]int
}

// Accept returns the next connection whose source is under its bound.
func (l *sourceLimitedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := sourceOf(c.RemoteAddr().String())
		l.mu.Lock()
		if l.open[src] >= l.perSource {
			l.mu.Unlock()
			_ = c.Close()
			continue
		}
		l.open[src]++
		l.mu.Unlock()
		return &countedConn{Conn: c, release: func() { l.release(src) }}, nil
	}
}

func (l *sourceLimitedListener) release(src string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[src]--; l.open[src] <= 0 {
		delete(l.open, src)
	}
}

// countedConn gives its source's slot back once, when it is closed.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
