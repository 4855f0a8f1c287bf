package resiliencehttp

import (
	"net/http"
	"net/netip"
	"strings"
)

// remoteAddrHost is the default key of the rate limit: the host of RemoteAddr,
// or RemoteAddr whole if it has no port.
func remoteAddrHost(r *http.Request) string {
	if host, ok := cutHostPort(r.RemoteAddr); ok {
		return host
	}
	return r.RemoteAddr
}

// cutHostPort returns the host of "host:port" or "[host]:port", or of "[host]",
// and reports whether s has one of these forms. Unlike net.SplitHostPort, it
// allocates nothing when s has none.
func cutHostPort(s string) (host string, ok bool) {
	if strings.HasPrefix(s, "[") {
		i := strings.IndexByte(s, ']')
		if i < 0 || i+1 < len(s) && !isColonPort(s[i+1:]) {
			return "", false
		}
		return s[1:i], true
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 || strings.IndexByte(s[:i], ':') >= 0 || !isColonPort(s[i:]) {
		return "", false // no port, or an IPv6 address without brackets
	}
	return s[:i], true
}

// isColonPort reports whether s is a colon and a decimal port.
func isColonPort(s string) bool {
	if len(s) < 2 || s[0] != ':' {
		return false
	}
	for _, c := range []byte(s[1:]) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// forwardedClient is the key of the rate limit with trusted proxies: the
// rightmost address of X-Forwarded-For that is not trusted, when the request
// comes from a trusted proxy, as WithTrustedProxies says.
//
// The limiter keeps its keys, so a key cut from a longer header line is
// copied: the limiter must not keep the line, which the client may have
// padded.
func (h *handler) forwardedClient(r *http.Request) string {
	client := remoteAddrHost(r)
	a, err := netip.ParseAddr(client)
	if err != nil || !h.trusts(a) {
		return client
	}
	var from string // the line client was cut from, if any
	lines := r.Header["X-Forwarded-For"]
walk:
	for i := len(lines) - 1; i >= 0; i-- {
		for rest := lines[i]; rest != ""; {
			entry := rest
			if j := strings.LastIndexByte(rest, ','); j >= 0 {
				entry, rest = rest[j+1:], rest[:j]
			} else {
				rest = ""
			}
			if entry = strings.TrimSpace(entry); entry == "" {
				continue
			}
			host, a, ok := forwardedAddr(entry)
			if !ok {
				break walk // the proxy that wrote entry is as far as we can see
			}
			client, from = host, lines[i]
			if !h.trusts(a) {
				break walk
			}
		}
	}
	if len(client) < len(from) {
		return strings.Clone(client)
	}
	return client
}

// forwardedAddr parses an entry of X-Forwarded-For: an IP address, with or
// without a port, which is dropped. Its zone, if any, names an interface:
// an entry whose zone holds a space or a control character is not an
// address, so that a key is always one entry.
func forwardedAddr(entry string) (host string, a netip.Addr, ok bool) {
	host = entry
	if h, ok := cutHostPort(entry); ok {
		host = h
	}
	a, err := netip.ParseAddr(host)
	if err != nil || strings.ContainsFunc(a.Zone(), func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return host, a, false
	}
	return host, a, true
}

// trusts reports whether a is in a trusted prefix.
func (h *handler) trusts(a netip.Addr) bool {
	a = a.WithZone("").Unmap()
	for _, p := range h.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
