package servicetest

import (
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Proxy is a TCP proxy to a server, for tests of a connection that fails:
// Cut closes every connection through it and refuses new ones, Hold lets
// requests through and drops the answers, Pause keeps the answers until
// Restore, Delay holds each answer back for a while, and Restore lets
// everything through again.
type Proxy struct {
	ln     net.Listener
	target string
	stop   chan struct{} // closed when the test ends

	mu      sync.Mutex
	cut     bool          // connections closed, new ones refused
	hold    bool          // requests reach the server, answers are dropped
	resume  chan struct{} // answers wait until it is closed: open while paused
	latency time.Duration // answers wait this long on the way back
	conns   map[net.Conn]bool
	wg      sync.WaitGroup
}

// NewProxy starts a proxy on loopback to target (host:port), which passes
// everything until told otherwise; it stops when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("servicetest: proxy: %v", err)
	}
	p := &Proxy{ln: ln, target: target, stop: make(chan struct{}), resume: closed, conns: map[net.Conn]bool{}}
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
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut closes every connection through the proxy, and refuses new ones until
// Restore: a client sees its connection end, or end as soon as it is made.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	p.set(true, false, 0) // after the close, so that nothing paused gets out
}

// Hold lets connections and requests through to the server, and no answer
// back: the server is there, but slow beyond any timeout.
func (p *Proxy) Hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.set(false, true, 0)
}

// Pause lets connections and requests through to the server, and keeps its
// answers until Restore, which delivers them in order, or Cut, which drops
// them with the connections.
func (p *Proxy) Pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut, p.hold, p.latency = false, false, 0
	if p.resume == closed {
		p.resume = make(chan struct{})
	}
}

// Delay makes every answer wait d on its way back.
func (p *Proxy) Delay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.set(false, false, d)
}

// Restore lets everything through again, at once.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.set(false, false, 0)
}

// set puts the proxy in one mode, and ends a pause.
func (p *Proxy) set(cut, hold bool, latency time.Duration) {
	p.cut, p.hold, p.latency = cut, hold, latency
	if p.resume != closed {
		close(p.resume)
		p.resume = closed
	}
}

// closed is the resume channel of a proxy that is not paused.
var closed = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

func (p *Proxy) accept() {
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

// answer copies the server's answers to the client, as the proxy's mode
// says when each arrives.
func (p *Proxy) answer(client, server net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := server.Read(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		hold, resume, latency := p.hold, p.resume, p.latency
		p.mu.Unlock()
		if hold {
			continue
		}
		select {
		case <-p.stop:
			return
		case <-resume:
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
func (p *Proxy) close(client, server net.Conn) {
	client.Close()
	server.Close()
	p.mu.Lock()
	delete(p.conns, client)
	delete(p.conns, server)
	p.mu.Unlock()
}

// ProxyURL returns rawURL with its host replaced by a proxy to it, with the
// proxy; defaultPort is the port of a URL that names none.
func ProxyURL(t testing.TB, rawURL, defaultPort string) (string, *Proxy) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		t.Fatalf("servicetest: proxy: %q is not a URL with a host (%v)", rawURL, err)
	}
	target := u.Host
	if u.Port() == "" {
		target = net.JoinHostPort(u.Hostname(), defaultPort)
	}
	p := NewProxy(t, target)
	u.Host = p.Addr()
	return u.String(), p
}

// ThroughProxy returns a new handle on db's database whose connections go
// through a Proxy, with the proxy. It works for PostgreSQL (URL DSNs) and
// MySQL; SQLite has no connection to cut.
func ThroughProxy(t testing.TB, db *DB) (*DB, *Proxy) {
	t.Helper()
	var dsn string
	var p *Proxy
	switch db.Dialect {
	case "postgres":
		dsn, p = ProxyURL(t, db.DSN, "5432")
	case "mysql":
		cfg, err := mysql.ParseDSN(db.DSN)
		if err != nil {
			t.Fatalf("servicetest: %v", err)
		}
		p = NewProxy(t, cfg.Addr)
		cfg.Addr = p.Addr()
		dsn = cfg.FormatDSN()
	default:
		t.Fatalf("servicetest: ThroughProxy: %s has no connection to cut", db.Dialect)
	}
	return &DB{DB: open(t, db.Driver, dsn), Dialect: db.Dialect, Driver: db.Driver, DSN: dsn}, p
}
