package servicetest

import (
	"io"
	"net"
	"net/url"
	"sync"
	"testing"

	"github.com/go-sql-driver/mysql"
)

// Proxy is a TCP proxy to a server, for tests that cut the connection: Cut
// closes every connection through it and refuses new ones until Restore.
type Proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

// NewProxy starts a proxy on loopback to target (host:port); it stops when
// the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("servicetest: proxy: %v", err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.Cut()
		p.wg.Wait()
	})
	return p
}

// Addr returns the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut closes every connection through the proxy, and refuses new ones until
// Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
}

// Restore lets connections through again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

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
		pipe := func(dst, src net.Conn) {
			io.Copy(dst, src) //nolint:errcheck // ends when either side closes
			dst.Close()
			src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		p.wg.Go(func() { pipe(server, client) })
		p.wg.Go(func() { pipe(client, server) })
	}
}

// ThroughProxy returns a new handle on db's database whose connections go
// through a Proxy, with the proxy. It works for PostgreSQL (URL DSNs) and
// MySQL; SQLite has no connection to cut.
func ThroughProxy(t testing.TB, db *DB) (*DB, *Proxy) {
	t.Helper()
	var target, dsn string
	switch db.Dialect {
	case "postgres":
		u, err := url.Parse(db.DSN)
		if err != nil {
			t.Fatalf("servicetest: %v", err)
		}
		target = u.Host
		p := NewProxy(t, target)
		u.Host = p.Addr()
		dsn = u.String()
		return &DB{DB: open(t, db.Driver, dsn), Dialect: db.Dialect, Driver: db.Driver, DSN: dsn}, p
	case "mysql":
		cfg, err := mysql.ParseDSN(db.DSN)
		if err != nil {
			t.Fatalf("servicetest: %v", err)
		}
		p := NewProxy(t, cfg.Addr)
		cfg.Addr = p.Addr()
		dsn = cfg.FormatDSN()
		return &DB{DB: open(t, db.Driver, dsn), Dialect: db.Dialect, Driver: db.Driver, DSN: dsn}, p
	}
	t.Fatalf("servicetest: ThroughProxy: %s has no connection to cut", db.Dialect)
	return nil, nil
}
