package resiliencehttp

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
)

// newKeyedHandler returns the handler of a rate limit whose key trusts proxies in
// 10.0.0.0/8, 127.0.0.0/8 and 2001:db8::/32, or none if trusted is false.
func newKeyedHandler(trusted bool) *handler {
	opts := []HandlerOption{WithRateLimit(1, 1)}
	if trusted {
		opts = append(opts, WithTrustedProxies(netip.MustParsePrefix("10.0.0.0/8"),
			netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")))
	}
	return Handler(http.NotFoundHandler(), opts...).(*handler)
}

func forwardedRequest(remoteAddr string, xff ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = remoteAddr
	for _, v := range xff {
		r.Header.Add("X-Forwarded-For", v)
	}
	return r
}

func TestHandlerKey(t *testing.T) {
	tests := []struct {
		name       string
		trusted    bool
		remoteAddr string
		xff        []string
		want       string
		garbage    bool // an entry is not an address: parsing it allocates an error
		copied     bool // the key is cut from a longer line, and copied
	}{
		{name: "default", remoteAddr: "192.0.2.1:1234", want: "192.0.2.1"},
		{name: "default ignores the header", remoteAddr: "10.0.0.1:1234", xff: []string{"203.0.113.1"}, want: "10.0.0.1"},
		{name: "default IPv6 with a zone", remoteAddr: "[fe80::1%eth0]:80", want: "fe80::1%eth0"},
		{name: "default without a port", remoteAddr: "pipe", want: "pipe"},
		{name: "default empty", remoteAddr: "", want: ""},
		{name: "untrusted peer", trusted: true, remoteAddr: "192.0.2.1:1234", xff: []string{"203.0.113.1"}, want: "192.0.2.1"},
		{name: "trusted peer, no header", trusted: true, remoteAddr: "10.0.0.1:80", want: "10.0.0.1"},
		{name: "trusted peer", trusted: true, remoteAddr: "10.0.0.1:80", xff: []string{"203.0.113.1"}, want: "203.0.113.1"},
		{name: "trusted IPv6 peer", trusted: true, remoteAddr: "[2001:db8::1]:443", xff: []string{"203.0.113.1"}, want: "203.0.113.1"},
		{name: "trusted mapped peer", trusted: true, remoteAddr: "[::ffff:10.0.0.1]:80", xff: []string{"203.0.113.1"}, want: "203.0.113.1"},
		{name: "rightmost untrusted", trusted: true, remoteAddr: "10.0.0.1:80",
			xff: []string{"198.51.100.1, 203.0.113.1, 10.0.0.2"}, want: "203.0.113.1", copied: true},
		{name: "lines are one list", trusted: true, remoteAddr: "10.0.0.1:80",
			xff: []string{"198.51.100.1", "203.0.113.1 , 10.0.0.2"}, want: "203.0.113.1", copied: true},
		{name: "walks back over lines", trusted: true, remoteAddr: "10.0.0.1:80",
			xff: []string{"198.51.100.1", "10.0.0.2"}, want: "198.51.100.1"},
		{name: "all trusted: the leftmost", trusted: true, remoteAddr: "10.0.0.1:80",
			xff: []string{" 10.0.0.3 ,10.0.0.2"}, want: "10.0.0.3", copied: true},
		{name: "not an address: the proxy", trusted: true, remoteAddr: "10.0.0.1:80", xff: []string{"unknown"}, want: "10.0.0.1",
			garbage: true},
		{name: "not an address behind a proxy", trusted: true, remoteAddr: "10.0.0.1:80",
			xff: []string{"198.51.100.1, unknown, 10.0.0.2"}, want: "10.0.0.2", garbage: true},
		{name: "with a port", trusted: true, remoteAddr: "10.0.0.1:80", xff: []string{"203.0.113.7:1234"}, want: "203.0.113.7", copied: true},
		{name: "IPv6 with a port", trusted: true, remoteAddr: "10.0.0.1:80", xff: []string{"[2001:db9::5]:4711"}, want: "2001:db9::5", copied: true},
		{name: "IPv6 with a zone", trusted: true, remoteAddr: "10.0.0.1:80", xff: []string{"fe80::1%eth0"}, want: "fe80::1%eth0"},
		{name: "IPv6 in brackets", trusted: true, remoteAddr: "10.0.0.1:80", xff: []string{"[2001:db9::5]"}, want: "2001:db9::5", copied: true},
		{name: "not a port", trusted: true, remoteAddr: "10.0.0.1:80", xff: []string{"203.0.113.7:http"}, want: "10.0.0.1",
			garbage: true},
		{name: "empty entries", trusted: true, remoteAddr: "10.0.0.1:80", xff: []string{",, ", ""}, want: "10.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newKeyedHandler(tt.trusted)
			r := forwardedRequest(tt.remoteAddr, tt.xff...)
			assert.Equal(t, tt.want, h.key(r), "RemoteAddr %q, X-Forwarded-For %q", tt.remoteAddr, tt.xff)
			if !tt.garbage {
				allocs := 0.0
				if tt.copied {
					allocs = 1
				}
				assert.Equal(t, allocs, testing.AllocsPerRun(10, func() { h.key(r) }))
			}
		})
	}
}

func TestHandlerKeyKeepsNoLine(t *testing.T) {
	h := newKeyedHandler(true)
	line := strings.Repeat("198.51.100.1, ", 1000) + "203.0.113.1, 10.0.0.2"
	key := h.key(forwardedRequest("10.0.0.1:80", line))
	assert.Equal(t, "203.0.113.1", key)
	assert.NotSame(t, unsafe.StringData(line[len(line)-len("203.0.113.1, 10.0.0.2"):]), unsafe.StringData(key),
		"the key is a copy, not a part of the line")
}

func TestTrustedProxiesMappedPrefix(t *testing.T) {
	h := Handler(http.NotFoundHandler(), WithRateLimit(1, 1),
		WithTrustedProxies(netip.MustParsePrefix("::ffff:10.0.0.0/104"))).(*handler)
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, h.trusted)
	assert.Equal(t, "203.0.113.1", h.key(forwardedRequest("10.1.2.3:80", "203.0.113.1")))
}

func FuzzHandlerKey(f *testing.F) {
	f.Add("10.0.0.1:80", "198.51.100.1, 203.0.113.1, 10.0.0.2")
	f.Add("[2001:db8::1]:443", "[2001:db9::5]:4711, unknown")
	f.Add("192.0.2.1:1234", "203.0.113.1")
	f.Fuzz(func(t *testing.T, remoteAddr, xff string) {
		h := newKeyedHandler(true)
		r := forwardedRequest(remoteAddr, xff)
		peer := remoteAddrHost(r)
		key := h.key(r)
		if a, err := netip.ParseAddr(peer); err != nil || !h.trusts(a) {
			assert.Equal(t, peer, key, "an untrusted peer is the client")
			return
		}
		if key != peer {
			assert.Contains(t, xff, key, "the key comes from the header")
			_, err := netip.ParseAddr(key)
			assert.NoError(t, err, "the key is an address")
			assert.False(t, strings.ContainsAny(key, ", "), "the key is one entry")
		}
	})
}
