package redislimit_test

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// proxy is a TCP proxy in this process between the clients a test makes and
// Redis, which can cut them off, hold Redis's answers, or delay them.
type proxy struct {
	ln     net.Listener
	target string
	stop   chan struct{} // closed when the test ends

	mu      sync.Mutex
	cut     bool          // connections closed, new ones refused
	hold    bool          // requests reach Redis, answers are dropped
	latency time.Duration // answers wait this long on the way back
	conns   map[net.Conn]bool
	wg      sync.WaitGroup
}

// startProxy starts a proxy on loopback to the Redis at target, that passes
// everything until told otherwise; it stops when the test ends.
func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	p := &proxy{ln: ln, target: target, stop: make(chan struct{}), conns: map[net.Conn]bool{}}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		close(p.stop)
		p.Cut()
		p.wg.Wait()
	})
	return p
}

// Addr returns the proxy's host:port.
func (p *proxy) Addr() string { return p.ln.Addr().String() }

// Cut closes every connection through the proxy, and refuses new ones: a
// client sees its connection end (io.EOF), or end as soon as it is made.
func (p *proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut, p.hold, p.latency = true, false, 0
	for c := range p.conns {
		c.Close()
	}
}

// Hold lets connections and requests through to Redis, and no answer back:
// Redis is there, but slow beyond any timeout.
func (p *proxy) Hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut, p.hold, p.latency = false, true, 0
}

// Delay makes every answer wait d on its way back.
func (p *proxy) Delay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut, p.hold, p.latency = false, false, d
}

// Restore lets everything through again, at once.
func (p *proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut, p.hold, p.latency = false, false, 0
}

func (p *proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			client.Close()
			continue
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			client.Close()
			continue
		}
		p.conns[client], p.conns[server] = true, true
		p.mu.Unlock()
		p.wg.Go(func() {
			io.Copy(server, client) //nolint:errcheck // ends when either side closes
			p.close(client, server)
		})
		p.wg.Go(func() {
			p.answer(client, server)
			p.close(client, server)
		})
	}
}

// answer copies Redis's answers from server to client, as the mode of the
// proxy says when each arrives.
func (p *proxy) answer(client, server net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := server.Read(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		hold, latency := p.hold, p.latency
		p.mu.Unlock()
		if hold {
			continue
		}
		if latency > 0 {
			t := time.NewTimer(latency)
			select {
			case <-p.stop:
				t.Stop()
				return
			case <-t.C:
			}
		}
		if _, err := client.Write(buf[:n]); err != nil {
			return
		}
	}
}

// close closes both ends of a connection through the proxy.
func (p *proxy) close(client, server net.Conn) {
	client.Close()
	server.Close()
	p.mu.Lock()
	delete(p.conns, client)
	delete(p.conns, server)
	p.mu.Unlock()
}
