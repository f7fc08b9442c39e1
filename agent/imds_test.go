package agent

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func newUnitIMDS(tb testing.TB, mode IMDSTokenMode) *imdsHandler {
	tb.Helper()
	a, _, _ := newUnitAgent(tb)
	a.opts.IMDSTokenMode, a.opts.IMDSRegion, a.opts.IMDSAvailabilityZone = mode, "eu-west-1", "eu-west-1b"
	hosts, _ := hostsFor("169.254.169.254:80")
	return &imdsHandler{a: a, hosts: hosts, tokens: newIMDSTokens(nil), stats: newEndpointStats(a.metrics, "imds")}
}

type imdsReq struct {
	method, path, remote string
	header               map[string]string
}

func (h *imdsHandler) do(r imdsReq) *httptest.ResponseRecorder {
	if r.method == "" {
		r.method = http.MethodGet
	}
	if r.remote == "" {
		r.remote = "10.0.0.1:40000"
	}
	req := httptest.NewRequest(r.method, "http://169.254.169.254/", nil)
	req.URL.Path = r.path
	if i := strings.IndexByte(r.path, '%'); i >= 0 { // keep an escaped form as a client sent it
		req.URL.RawPath = r.path
	}
	req.RemoteAddr = r.remote
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func (h *imdsHandler) token(t *testing.T, remote string) string {
	t.Helper()
	w := h.do(imdsReq{method: http.MethodPut, path: imdsTokenPath, remote: remote, header: map[string]string{imdsTTLHeader: "21600"}})
	if w.Code != http.StatusOK || w.Header().Get(imdsTTLHeader) != "21600" {
		t.Fatalf("token PUT: %d %q ttl header %q", w.Code, w.Body.String(), w.Header().Get(imdsTTLHeader))
	}
	return w.Body.String()
}

const roleCreds = imdsCredsPrefix + "app"

func TestIMDSServesTheCallersRole(t *testing.T) {
	h := newUnitIMDS(t, IMDSTokensRequired)
	tok := map[string]string{imdsTokenHeader: h.token(t, "10.0.0.1:1")}
	if w := h.do(imdsReq{path: imdsCredsPrefix, header: tok}); w.Code != 200 || w.Body.String() != "app" {
		t.Fatalf("role list: %d %q", w.Code, w.Body.String())
	}
	w := h.do(imdsReq{path: roleCreds, header: tok})
	var body map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != 200 {
		t.Fatalf("credentials: %d %q", w.Code, w.Body.String())
	}
	for _, k := range []string{"AccessKeyId", "SecretAccessKey", "Token", "Expiration", "LastUpdated"} {
		if body[k] == "" {
			t.Errorf("credentials lack %s", k)
		}
	}
	if body["Code"] != "Success" || body["Type"] != "AWS-HMAC" {
		t.Errorf("Code %q Type %q", body["Code"], body["Type"])
	}
	w = h.do(imdsReq{path: imdsInfoPath, header: tok})
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != 200 || body["Code"] != "Success" ||
		body["InstanceProfileArn"] != "arn:aws:iam::123456789012:instance-profile/app" || !strings.HasPrefix(body["InstanceProfileId"], "AIPA") {
		t.Fatalf("info: %d %q", w.Code, w.Body.String())
	}
	for path, want := range map[string]string{imdsRegionPath: "eu-west-1", imdsAZPath: "eu-west-1b",
		imdsIdentityPath: `{"region":"eu-west-1","availabilityZone":"eu-west-1b","version":"2017-09-30"}`} {
		if w := h.do(imdsReq{path: path, header: tok}); w.Code != 200 || w.Body.String() != want {
			t.Errorf("%s: %d %q", path, w.Code, w.Body.String())
		}
	}
}

func TestIMDSRefusals(t *testing.T) {
	h := newUnitIMDS(t, IMDSTokensRequired)
	good := h.token(t, "10.0.0.1:1")
	other := h.token(t, "10.0.0.2:1") // app-2's
	expired := h.tokens.mint(time.Now().Add(-time.Second), netip.MustParseAddr("10.0.0.1"), "uid-1")
	forged := []byte(good)
	forged[len(forged)-3] ^= 1
	tok := func(v string) map[string]string { return map[string]string{imdsTokenHeader: v} }
	ttl := func(v string) map[string]string { return map[string]string{imdsTTLHeader: v} }
	for _, tc := range []struct {
		name string
		req  imdsReq
		want int
	}{
		{"a token request without a TTL is a bad request", imdsReq{method: http.MethodPut, path: imdsTokenPath}, 400},
		{"a token request with TTL 0 is a bad request", imdsReq{method: http.MethodPut, path: imdsTokenPath, header: ttl("0")}, 400},
		{"a token request with TTL 21601 is a bad request", imdsReq{method: http.MethodPut, path: imdsTokenPath, header: ttl("21601")}, 400},
		{"a token request with a non-numeric TTL is a bad request", imdsReq{method: http.MethodPut, path: imdsTokenPath, header: ttl("1h")}, 400},
		{"a token request through a proxy is forbidden", imdsReq{method: http.MethodPut, path: imdsTokenPath, header: map[string]string{imdsTTLHeader: "60", "X-Forwarded-For": "10.0.0.1"}}, 403},
		{"a token is only minted by PUT", imdsReq{path: imdsTokenPath, header: ttl("60")}, 405},
		{"IMDSv1 is refused when tokens are required", imdsReq{path: roleCreds}, 401},
		{"an expired token is refused", imdsReq{path: roleCreds, header: tok(expired)}, 401},
		{"a forged token is refused", imdsReq{path: roleCreds, header: tok(string(forged))}, 401},
		{"a token of another pod replayed from this pod's address is refused", imdsReq{path: roleCreds, header: tok(other)}, 401},
		{"a token replayed from another pod's address is refused", imdsReq{path: roleCreds, remote: "10.0.0.2:1", header: tok(good)}, 401},
		{"a garbage token is refused", imdsReq{path: roleCreds, header: tok("not-a-token")}, 401},
		{"another role's name is not found", imdsReq{path: imdsCredsPrefix + "admin", header: tok(good)}, 404},
		{"an unknown path is not found", imdsReq{path: "/latest/meta-data/hostname", header: tok(good)}, 404},
		{"user data is not served", imdsReq{path: "/latest/user-data", header: tok(good)}, 404},
		{"a dot-dot path is not found", imdsReq{path: imdsCredsPrefix + "../../meta-data/iam/info", header: tok(good)}, 404},
		{"an encoded path is not found", imdsReq{path: "/latest/meta-data/iam/security-credentials/%61pp", header: tok(good)}, 404},
		{"a doubled slash is not found", imdsReq{path: "/latest//meta-data/iam/info", header: tok(good)}, 404},
		{"an unknown caller gets no token", imdsReq{method: http.MethodPut, path: imdsTokenPath, remote: "10.9.9.9:1", header: ttl("60")}, 404},
		{"writes are refused", imdsReq{method: http.MethodPost, path: roleCreds, header: tok(good)}, 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.a.index.wait = time.Millisecond
			if w := h.do(tc.req); w.Code != tc.want {
				t.Fatalf("answered %d %q, want %d", w.Code, w.Body.String(), tc.want)
			}
		})
	}
}

func TestIMDSv1AllowedInOptionalMode(t *testing.T) {
	h := newUnitIMDS(t, IMDSTokensOptional)
	if w := h.do(imdsReq{path: roleCreds}); w.Code != 200 {
		t.Fatalf("IMDSv1 in optional mode: %d", w.Code)
	}
	if w := h.do(imdsReq{path: roleCreds, header: map[string]string{imdsTokenHeader: "bad"}}); w.Code != 401 {
		t.Fatalf("a present but invalid token in optional mode: %d, want 401", w.Code)
	}
}

// TestHugeHeadersAreRefused runs the agent's real server settings: a request
// with more header than any SDK sends is refused before the handler runs.
func TestHugeHeadersAreRefused(t *testing.T) {
	h := newUnitIMDS(t, IMDSTokensRequired)
	srv, addr, err := h.a.serve("127.0.0.1:0", h, false)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	conn, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := "GET " + roleCreds + " HTTP/1.1\r\nHost: 169.254.169.254\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufioReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("huge header answered %d", res.StatusCode)
	}
}

func FuzzIMDSToken(f *testing.F) {
	tokens := newIMDSTokens(nil)
	ip := netip.MustParseAddr("10.0.0.1")
	f.Add(tokens.mint(time.Now().Add(time.Hour), ip, "uid-1"))
	f.Add("")
	f.Add(strings.Repeat("A", imdsEncodedLen))
	f.Fuzz(func(t *testing.T, s string) {
		err := tokens.check(s, time.Now(), ip, "uid-1")
		if err != nil {
			return
		}
		// Accepted: it must be exactly a token this agent minted for this pod.
		raw, derr := decodeForTest(s)
		if derr != nil || len(raw) != imdsRawLen {
			t.Fatalf("accepted an undecodable token %q", s)
		}
		var want [imdsRawLen]byte
		tokens.payload(&want, time.Unix(int64(beUint64(raw[1:9])), 0), ip, "uid-1")
		tokens.tag(want[:imdsPayloadLen], want[imdsPayloadLen:])
		if string(want[:]) != string(raw) {
			t.Fatalf("accepted a token this agent did not mint: %q", s)
		}
	})
}

func BenchmarkIMDSHit(b *testing.B) {
	h := newUnitIMDS(b, IMDSTokensRequired)
	tok := h.tokens.mint(time.Now().Add(time.Hour), netip.MustParseAddr("10.0.0.1"), "uid-1")
	req := httptest.NewRequest(http.MethodGet, "http://169.254.169.254"+roleCreds, nil)
	req.RemoteAddr = "10.0.0.1:40000"
	req.Header.Set(imdsTokenHeader, tok)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		w.code = 0
		h.ServeHTTP(w, req)
	}
	if w.code != http.StatusOK {
		b.Fatalf("answered %d", w.code)
	}
}
