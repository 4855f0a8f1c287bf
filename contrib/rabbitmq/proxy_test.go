package rabbitoutbox_test

import (
	"net"
	"net/url"
	"sync"
	"testing"
)

// proxy stands between a Publisher and the broker, on the loopback, so that
// a test can take the broker away and bring it back without touching the
// broker itself. While down it closes every connection, and accepts new
// ones only to close them; while paused it holds what the broker sends, so
// confirms do not arrive.
type proxy struct {
	ln       net.Listener
	upstream string
	wg       sync.WaitGroup

	mu     sync.Mutex
	down   bool
	resume chan struct{} // closed unless paused
	conns  map[net.Conn]struct{}
}

// newProxy starts a proxy to the broker of amqpURL and returns it with the
// URL that reaches the broker through it. It stops when the test ends.
func newProxy(t testing.TB, amqpURL string) (*proxy, string) {
	t.Helper()
	u, err := url.Parse(amqpURL)
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	upstream := u.Host
	if u.Port() == "" {
		upstream = net.JoinHostPort(u.Hostname(), "5672")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	p := &proxy{ln: ln, upstream: upstream, resume: make(chan struct{}), conns: make(map[net.Conn]struct{})}
	close(p.resume)
	p.wg.Go(p.serve)
	t.Cleanup(func() {
		ln.Close()
		p.Down()
		p.wg.Wait()
	})
	u.Host = ln.Addr().String()
	return p, u.String()
}

func (p *proxy) serve() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			client.Close()
			continue
		}
		server, err := net.Dial("tcp", p.upstream)
		if err != nil {
			client.Close()
			continue
		}
		if !p.track(client, server) {
			client.Close()
			server.Close()
			continue
		}
		p.wg.Go(func() { p.pipe(server, client, false) })
		p.wg.Go(func() { p.pipe(client, server, true) })
	}
}

// track records a pair of connections, unless the proxy went down.
func (p *proxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

// pipe copies from src to dst; fromBroker copies wait while paused.
func (p *proxy) pipe(dst, src net.Conn, fromBroker bool) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if fromBroker {
				p.mu.Lock()
				resume := p.resume
				p.mu.Unlock()
				<-resume
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Down closes every connection through the proxy and refuses new ones.
func (p *proxy) Down() {
	p.mu.Lock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
	p.mu.Unlock()
	p.Resume()
}

// Up lets connections through again.
func (p *proxy) Up() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// Pause holds what the broker sends until Resume or Down.
func (p *proxy) Pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.resume:
		p.resume = make(chan struct{})
	default:
	}
}

// Resume delivers what Pause held.
func (p *proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.resume:
	default:
		close(p.resume)
	}
}
