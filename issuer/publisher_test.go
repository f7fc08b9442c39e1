package issuer

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const testIssuer = "https://oidc.example.test/cluster-a"

// fakeSource is the API server's two discovery endpoints, as bytes a test
// sets; the real API server is exercised in test/anycluster.
type fakeSource struct{ disc, jwks []byte }

func (f *fakeSource) GetRaw(_ context.Context, path string) ([]byte, error) {
	switch path {
	case "/.well-known/openid-configuration":
		return f.disc, nil
	case "/openid/v1/jwks":
		return f.jwks, nil
	}
	return nil, fmt.Errorf("unexpected path %s", path)
}

func discovery(issuer string) []byte {
	b, _ := json.Marshal(map[string]any{
		"issuer": issuer, "jwks_uri": issuer + "/openid/v1/jwks",
		"response_types_supported": []string{"id_token"}, "subject_types_supported": []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
	})
	return b
}

var keyCache = map[string]map[string]any{}

// rsaJWK returns a 2048-bit RSA public JWK with the given kid (keys are
// generated once per kid and reused, as generation is slow).
func rsaJWK(t testing.TB, kid string) map[string]any {
	if k, ok := keyCache[kid]; ok {
		return k
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	k := map[string]any{
		"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
		"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
	}
	keyCache[kid] = k
	return k
}

func jwks(t testing.TB, kids ...string) []byte {
	keys := []map[string]any{}
	for _, kid := range kids {
		keys = append(keys, rsaJWK(t, kid))
	}
	b, _ := json.Marshal(map[string]any{"keys": keys})
	return b
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestPublisher(t *testing.T, src *fakeSource, dir string, c *clock, window time.Duration) *Publisher {
	t.Helper()
	target, err := NewDirTarget(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Options{PublicURL: testIssuer, Source: src, Target: target, Overlap: window, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func publishedKids(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "openid", "v1", "jwks"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := ParseJWKS(b)
	if err != nil {
		t.Fatalf("published JWKS: %v", err)
	}
	var kids []string
	for _, k := range keys {
		kids = append(kids, k.ID)
	}
	return kids
}

func TestSyncPublishesAndWritesOnlyChanges(t *testing.T) {
	dir := t.TempDir()
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	p := newTestPublisher(t, &fakeSource{discovery(testIssuer), jwks(t, "a")}, dir, c, time.Hour)
	res, err := p.Sync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{StateObject, "openid/v1/jwks", DiscoveryObject}; !slices.Equal(res.Written, want) {
		t.Fatalf("first sync wrote %v, want %v", res.Written, want)
	}
	var d Discovery
	b, _ := os.ReadFile(filepath.Join(dir, ".well-known", "openid-configuration"))
	if err := json.Unmarshal(b, &d); err != nil || d.Issuer != testIssuer || d.JWKSURI != testIssuer+"/openid/v1/jwks" {
		t.Fatalf("published discovery %s (%v)", b, err)
	}
	c.t = c.t.Add(10 * time.Minute)
	if res, err = p.Sync(context.Background()); err != nil || len(res.Written) != 0 {
		t.Fatalf("an unchanged API server made the second sync write %v (err %v)", res.Written, err)
	}
}

func TestRotationKeepsTheOldKeyForTheWholeWindowAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	src := &fakeSource{discovery(testIssuer), jwks(t, "old")}
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	const window = time.Hour
	if _, err := newTestPublisher(t, src, dir, c, window).Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The API server is restarted with both keys, then with only the new one.
	src.jwks = jwks(t, "old", "new")
	c.t = c.t.Add(time.Minute)
	if _, err := newTestPublisher(t, src, dir, c, window).Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := publishedKids(t, dir); !slices.Equal(got, []string{"new", "old"}) {
		t.Fatalf("during rotation published %v, want both keys", got)
	}
	src.jwks = jwks(t, "new")
	c.t = c.t.Add(time.Minute)
	dropAt := c.t.Add(window)
	for _, step := range []time.Duration{0, 20 * time.Minute, 39*time.Minute + 59*time.Second} {
		c.t = dropAt.Add(-window).Add(step)
		// A new publisher each time: the memory must come from the target.
		if _, err := newTestPublisher(t, src, dir, c, window).Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := publishedKids(t, dir); !slices.Equal(got, []string{"new", "old"}) {
			t.Fatalf("%s after the old key left the API server, published %v; want it kept for the whole window", step, got)
		}
	}
	c.t = dropAt
	res, err := newTestPublisher(t, src, dir, c, window).Sync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := publishedKids(t, dir); !slices.Equal(got, []string{"new"}) || !slices.Equal(res.Dropped, []string{"old"}) {
		t.Fatalf("after the window published %v, dropped %v; want only the new key", got, res.Dropped)
	}
}

func TestKeysOnlyInThePublishedJWKSAreKeptOneWindow(t *testing.T) {
	dir := t.TempDir()
	src := &fakeSource{discovery(testIssuer), jwks(t, "old", "new")}
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	if _, err := newTestPublisher(t, src, dir, c, time.Hour).Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The state object is lost; the old key must not vanish at once.
	if err := os.Remove(filepath.Join(dir, StateObject)); err != nil {
		t.Fatal(err)
	}
	src.jwks = jwks(t, "new")
	c.t = c.t.Add(2 * time.Hour)
	if _, err := newTestPublisher(t, src, dir, c, time.Hour).Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := publishedKids(t, dir); !slices.Equal(got, []string{"new", "old"}) {
		t.Fatalf("without state, published %v; want the published old key kept", got)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	priv := rsaJWK(t, "a")
	withPrivate := map[string]any{}
	for k, v := range priv {
		withPrivate[k] = v
	}
	withPrivate["d"] = "AQAB"
	privJWKS, _ := json.Marshal(map[string]any{"keys": []any{withPrivate}})
	small, _ := json.Marshal(map[string]any{"keys": []any{map[string]any{"kty": "RSA", "kid": "s", "n": "AQAB", "e": "AQAB"}}})
	dupJWKS, _ := json.Marshal(map[string]any{"keys": []any{priv, priv}})
	wrongJWKSURI, _ := json.Marshal(map[string]any{"issuer": testIssuer, "jwks_uri": "https://elsewhere.test/keys"})
	for _, tc := range []struct {
		name      string
		disc      []byte
		keys      []byte
		wantError string
	}{
		{"an empty JWKS is refused", discovery(testIssuer), []byte(`{"keys":[]}`), "no keys"},
		{"a JWKS without keys is refused", discovery(testIssuer), []byte(`{}`), "no keys"},
		{"a malformed JWKS is refused", discovery(testIssuer), []byte(`{"keys":[`), "not JSON"},
		{"a key without kid is refused", discovery(testIssuer), []byte(`{"keys":[{"kty":"RSA"}]}`), "no kid"},
		{"a private key is never published", discovery(testIssuer), privJWKS, "private member"},
		{"a weak RSA key is refused", discovery(testIssuer), small, "fewer than 2048"},
		{"a kid appearing twice is refused", discovery(testIssuer), dupJWKS, "appears twice"},
		{"another issuer is refused", discovery("https://kubernetes.default.svc"), jwks(t, "a"), "not the public URL"},
		{"a jwks_uri outside the issuer is refused", wrongJWKSURI, jwks(t, "a"), "not beneath the issuer"},
		{"a malformed discovery document is refused", []byte(`<html>`), jwks(t, "a"), "not JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c := &clock{time.Now()}
			// A good publish first: the bad one must leave it as it was.
			good := newTestPublisher(t, &fakeSource{discovery(testIssuer), jwks(t, "good")}, dir, c, time.Hour)
			if _, err := good.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, dir)
			_, err := newTestPublisher(t, &fakeSource{tc.disc, tc.keys}, dir, c, time.Hour).Sync(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.wantError) {
				t.Fatalf("error %v, want one saying %q", err, tc.wantError)
			}
			if after := snapshot(t, dir); !maps(before, after) {
				t.Fatalf("a refused sync changed the target:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

func TestUnwritableDirectoryIsAClearError(t *testing.T) {
	if os.Geteuid() == 0 {
		// Root ignores directory permissions; a file in the way fails for
		// everyone.
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "openid"), []byte("in the way"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, StateObject), mustState(t), 0o444); err != nil {
			t.Fatal(err)
		}
		assertUnwritable(t, dir)
		return
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(dir, 0o755) })
	assertUnwritable(t, dir)
}

func mustState(t *testing.T) []byte {
	return (&State{Version: stateVersion, Issuer: testIssuer}).render()
}

func assertUnwritable(t *testing.T, dir string) {
	t.Helper()
	before := snapshot(t, dir)
	_, err := newTestPublisher(t, &fakeSource{discovery(testIssuer), jwks(t, "a")}, dir, &clock{time.Now()}, time.Hour).Sync(context.Background())
	if err == nil || !strings.Contains(err.Error(), "publish ") || !strings.Contains(err.Error(), "write access") {
		t.Fatalf("error %v, want a publish error naming the object and the access it needs", err)
	}
	if after := snapshot(t, dir); !maps(before, after) {
		t.Fatalf("a failed sync changed the documents:\nbefore %v\nafter  %v", before, after)
	}
}

// snapshot maps every published document under dir to its content. The
// state object is left out: it is the publisher's own, not a document.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || filepath.Base(p) == StateObject {
			return err
		}
		b, err := os.ReadFile(p)
		m[strings.TrimPrefix(p, dir)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestCheckPublicURL(t *testing.T) {
	for _, ok := range []string{"https://s3.us-east-1.amazonaws.com/bucket", "https://oidc.example.com", "https://127.0.0.1:9000/b/cluster-a"} {
		if _, err := CheckPublicURL(ok); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"http://oidc.example.com", "https://oidc.example.com/", "https://", "https://x/a?b=c", "https://x/a/../b", "oidc.example.com", "https://u@x/a"} {
		if _, err := CheckPublicURL(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
