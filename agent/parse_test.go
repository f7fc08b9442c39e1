package agent

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

func TestRemoteIP(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // "" means refused
	}{
		{"10.0.0.1:40000", "10.0.0.1"},
		{"[fd00::1]:80", "fd00::1"},
		{"[::ffff:10.0.0.1]:80", "10.0.0.1"}, // IPv4-mapped: one pod, one spelling
		{"[fe80::1%eth0]:80", "fe80::1"},     // zones dropped
		{"10.0.0.1", ""},
		{"", ""},
		{"pod.example:80", ""},
		{"10.0.0.1:99999", ""},
	} {
		t.Run("RemoteAddr "+tc.in, func(t *testing.T) {
			got, ok := remoteIP(tc.in)
			if tc.want == "" {
				if ok {
					t.Fatalf("accepted %q as %v", tc.in, got)
				}
				return
			}
			if !ok || got != netip.MustParseAddr(tc.want) {
				t.Fatalf("got %v %v, want %s", got, ok, tc.want)
			}
		})
	}
}

func TestHostsFor(t *testing.T) {
	for _, tc := range []struct {
		listen        string
		allow, refuse []string
	}{
		{"169.254.170.23:80", []string{"169.254.170.23", "169.254.170.23:80"}, []string{"evil.example", "169.254.170.2", "169.254.170.23:8080", ""}},
		{"[fd00:ec2::23]:80", []string{"[fd00:ec2::23]", "[FD00:EC2::23]:80"}, []string{"fd00:ec2::23", "[fd00:ec2::24]"}},
		{"127.0.0.1:8080", []string{"127.0.0.1:8080", "localhost:8080", "LOCALHOST:8080"}, []string{"127.0.0.1", "localhost", "127.0.0.2:8080"}},
	} {
		hs, err := hostsFor(tc.listen)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range tc.allow {
			if !hs.allows(h) {
				t.Errorf("listener %s refuses Host %q", tc.listen, h)
			}
		}
		for _, h := range tc.refuse {
			if hs.allows(h) {
				t.Errorf("listener %s accepts Host %q", tc.listen, h)
			}
		}
	}
}

func FuzzRemoteIP(f *testing.F) {
	for _, s := range []string{"10.0.0.1:1", "[::1]:80", "[::ffff:1.2.3.4]:5", "[fe80::1%lo]:1", "", ":", "[]:1", "1.2.3.4:65536"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ip, ok := remoteIP(s)
		if !ok {
			return
		}
		if !ip.IsValid() || ip.Zone() != "" || ip.Is4In6() {
			t.Fatalf("remoteIP(%q) = %v: not a canonical address", s, ip)
		}
	})
}

// FuzzContainerRequest throws arbitrary methods, paths, hosts and remote
// addresses at the handler: it must never panic, and must serve credentials
// only for a GET (or HEAD) of the credentials path, with the agent's Host,
// from the known pod's address.
func FuzzContainerRequest(f *testing.F) {
	f.Add("GET", "/v1/credentials", "169.254.170.23", "10.0.0.1:1")
	f.Add("GET", "/v1/credentials/../v1/credentials", "169.254.170.23", "10.0.0.1:1")
	f.Add("GET", "/v1/%2e%2e/credentials", "169.254.170.23", "10.0.0.1:1")
	f.Add("POST", "/v1/credentials", "169.254.170.23:80", "10.0.0.2:1")
	f.Add("GET", "/v1/credentials", "evil.example", "10.0.0.1:1")
	f.Add("GET", "/", strings.Repeat("a", 300), "[::1]:9")
	_, h, _ := newUnitAgent(f)
	h.a.index.wait = 0 // unknown addresses go straight to the (fake) API
	f.Fuzz(func(t *testing.T, method, path, host, remote string) {
		r, err := http.NewRequest(method, "http://169.254.170.23/", nil)
		if err != nil {
			return // not a method net/http would ever parse
		}
		r.URL.Path, r.Host, r.RemoteAddr = path, host, remote
		w := &discardWriter{h: http.Header{}}
		h.ServeHTTP(w, r)
		served := w.code == http.StatusOK
		legit := (method == http.MethodGet || method == http.MethodHead) && path == "/v1/credentials" &&
			h.hosts.allows(host) && strings.HasPrefix(remote, "10.0.0.1:")
		if served && !legit {
			t.Fatalf("served credentials to %s %q Host %q from %q", method, path, host, remote)
		}
		if w.code == 0 {
			t.Fatalf("no status for %s %q Host %q from %q", method, path, host, remote)
		}
	})
}
