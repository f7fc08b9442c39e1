package agent

import (
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/podcreds/podcreds/failure"
)

// hostSet is the Host header values a listener accepts. Checking Host defeats
// DNS rebinding: a page that tricks a pod's browser or HTTP client into
// calling "evil.example", resolved to our address, still sends
// Host: evil.example, and is refused.
type hostSet map[string]struct{}

// hostsFor lists the spellings of a listen address a legitimate client uses:
// "ip:port" always, the bare ip when the port is 80 (the default in a URI),
// and "localhost" variants for loopback listeners.
func hostsFor(listen string) (hostSet, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, err
	}
	hs := hostSet{}
	add := func(h string) {
		hs[strings.ToLower(net.JoinHostPort(h, port))] = struct{}{}
		if port == "80" {
			if strings.Contains(h, ":") {
				h = "[" + h + "]"
			}
			hs[strings.ToLower(h)] = struct{}{}
		}
	}
	add(host)
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
		add("localhost")
	}
	return hs, nil
}

// refusal is the answer to a Host this listener does not accept: it lists
// the ones it does, so a client configured with a name (or a proxy that
// rewrites Host) learns what to use instead.
func (hs hostSet) refusal() error {
	accepted := make([]string, 0, len(hs))
	for h := range hs {
		accepted = append(accepted, h)
	}
	slices.Sort(accepted)
	return failure.Final(http.StatusForbidden, "HostNotAllowed", "the Host header does not name this agent (a defence against DNS rebinding); this listener accepts Host "+
		strings.Join(accepted, ", ")+": use the address itself in the URL", nil)
}

// allows reports whether a Host header names this listener. Host values are
// case-insensitive; lower-casing allocates only when a client sends upper case.
func (hs hostSet) allows(host string) bool {
	if _, ok := hs[host]; ok {
		return true
	}
	_, ok := hs[strings.ToLower(host)]
	return ok
}
