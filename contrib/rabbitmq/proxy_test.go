package rabbitoutbox_test

import (
	"net"
	"net/url"
	"testing"

	"github.com/resilience-go/resilience/internal/servicetest"
)

// newProxy starts a proxy to the broker of amqpURL and returns it with the
// URL that reaches the broker through it, so that a test can take the
// broker away (Cut), keep its confirms back (Pause) and bring it back
// (Restore) without touching the broker itself. It stops when the test
// ends.
func newProxy(t testing.TB, amqpURL string) (*servicetest.Proxy, string) {
	t.Helper()
	u, err := url.Parse(amqpURL)
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	upstream := u.Host
	if u.Port() == "" {
		upstream = net.JoinHostPort(u.Hostname(), "5672")
	}
	p := servicetest.NewProxy(t, upstream)
	u.Host = p.Addr()
	return p, u.String()
}
