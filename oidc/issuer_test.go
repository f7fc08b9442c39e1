package oidc

import (
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	clocktesting "k8s.io/utils/clock/testing"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testNow is the fake clock's start; tokens are minted relative to it.
var testNow = time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)

const testAudience = "podcreds"

// Keys are generated once per test binary: RSA generation is slow.
var (
	rsaKeyA = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA() })
	rsaKeyB = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA() })
	ecKeyA  = sync.OnceValue(func() *ecdsa.PrivateKey { return mustEC() })
	ecKeyB  = sync.OnceValue(func() *ecdsa.PrivateKey { return mustEC() })
)

func mustRSA() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

func mustEC() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

// signer is a private key under a kid, able to mint tokens and to describe
// its public half as a JWK.
type signer struct {
	kid string
	rsa *rsa.PrivateKey
	ec  *ecdsa.PrivateKey
}

func rsaSigner(kid string, k *rsa.PrivateKey) signer  { return signer{kid: kid, rsa: k} }
func ecSigner(kid string, k *ecdsa.PrivateKey) signer { return signer{kid: kid, ec: k} }

func (s signer) alg() string {
	if s.rsa != nil {
		return RS256
	}
	return ES256
}

func (s signer) jwk() map[string]any {
	enc := base64.RawURLEncoding.EncodeToString
	if s.rsa != nil {
		return map[string]any{"kty": "RSA", "kid": s.kid, "use": "sig", "alg": RS256,
			"n": enc(s.rsa.N.Bytes()), "e": enc(big.NewInt(int64(s.rsa.E)).Bytes())}
	}
	b, err := s.ec.PublicKey.Bytes()
	if err != nil {
		panic(err)
	}
	return map[string]any{"kty": "EC", "kid": s.kid, "use": "sig", "crv": "P-256",
		"x": enc(b[1:33]), "y": enc(b[33:])}
}

// signRaw signs input as alg needs: PKCS #1 v1.5 or raw r||s.
func (s signer) signRaw(input string) []byte {
	sum := sha256.Sum256([]byte(input))
	if s.rsa != nil {
		sig, err := rsa.SignPKCS1v15(rand.Reader, s.rsa, crypto.SHA256, sum[:])
		if err != nil {
			panic(err)
		}
		return sig
	}
	r, ss, err := ecdsa.Sign(rand.Reader, s.ec, sum[:])
	if err != nil {
		panic(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	ss.FillBytes(sig[32:])
	return sig
}

// claimsFor returns the claims of a pod-bound token from iss, valid from
// testNow for ten minutes.
func claimsFor(iss string) map[string]any {
	return map[string]any{
		"iss": iss,
		"sub": "system:serviceaccount:team-a:app",
		"aud": []string{testAudience, "sts.amazonaws.com"},
		"iat": testNow.Unix(),
		"nbf": testNow.Unix(),
		"exp": testNow.Add(10 * time.Minute).Unix(),
		"kubernetes.io": map[string]any{
			"namespace":      "team-a",
			"serviceaccount": map[string]any{"name": "app", "uid": "sa-uid"},
			"pod":            map[string]any{"name": "app-1", "uid": "pod-uid"},
			"node":           map[string]any{"name": "node-a", "uid": "node-uid"},
		},
	}
}

// mint signs a token with s; edit, when set, changes header and claims
// first.
func (s signer) mint(iss string, edit func(header, claims map[string]any)) string {
	header := map[string]any{"alg": s.alg(), "kid": s.kid}
	claims := claimsFor(iss)
	if edit != nil {
		edit(header, claims)
	}
	input := seg(header) + "." + seg(claims)
	return input + "." + base64.RawURLEncoding.EncodeToString(s.signRaw(input))
}

func seg(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// testIssuer is an httptest TLS server playing the API server's discovery
// endpoints, with the JWKS it serves and the requests it saw under control.
type testIssuer struct {
	srv       *httptest.Server
	jwksGets  atomic.Int64
	discovery atomic.Int64

	mu        sync.Mutex
	keys      []map[string]any
	docIssuer string // issuer the discovery document names; the URL if empty
	status    int    // answer every request with this status when non-zero
	gate      func() // called before answering any request, when set
}

func newIssuer(t testing.TB, signers ...signer) *testIssuer {
	iss := &testIssuer{}
	iss.setKeys(signers...)
	mux := http.NewServeMux()
	gated := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			iss.mu.Lock()
			gate := iss.gate
			iss.mu.Unlock()
			if gate != nil {
				gate()
			}
			h(w, r)
		}
	}
	mux.HandleFunc("GET /.well-known/openid-configuration", gated(func(w http.ResponseWriter, r *http.Request) {
		iss.discovery.Add(1)
		iss.mu.Lock()
		status, docIssuer := iss.status, cmp.Or(iss.docIssuer, iss.srv.URL)
		iss.mu.Unlock()
		if status != 0 {
			http.Error(w, "down", status)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": docIssuer, "jwks_uri": iss.srv.URL + "/openid/v1/jwks"})
	}))
	mux.HandleFunc("GET /openid/v1/jwks", gated(func(w http.ResponseWriter, r *http.Request) {
		iss.jwksGets.Add(1)
		iss.mu.Lock()
		status, keys := iss.status, iss.keys
		iss.mu.Unlock()
		// As the API server does: the JWKS is application/jwk-set+json, and
		// a client that accepts only application/json gets 406.
		if accept := r.Header.Get("Accept"); accept != "" && !strings.Contains(accept, "application/jwk-set+json") && !strings.Contains(accept, "*/*") {
			status = http.StatusNotAcceptable
		}
		if status != 0 {
			http.Error(w, "down", status)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": keys})
	}))
	iss.srv = httptest.NewTLSServer(mux)
	t.Cleanup(iss.srv.Close)
	return iss
}

func (iss *testIssuer) setKeys(signers ...signer) {
	keys := make([]map[string]any, 0, len(signers))
	for _, s := range signers {
		keys = append(keys, s.jwk())
	}
	iss.mu.Lock()
	iss.keys = keys
	iss.mu.Unlock()
}

func (iss *testIssuer) set(f func(*testIssuer)) {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	f(iss)
}

func (iss *testIssuer) url() string { return iss.srv.URL }

// verifier returns a Verifier for iss on a fake clock at testNow; edit,
// when set, changes the options first.
func (iss *testIssuer) verifier(t testing.TB, edit func(*Options)) (*Verifier, *clocktesting.FakePassiveClock) {
	t.Helper()
	clk := clocktesting.NewFakePassiveClock(testNow)
	opts := Options{Issuer: iss.url(), Audience: testAudience, HTTPClient: iss.srv.Client(), Clock: clk}
	if edit != nil {
		edit(&opts)
	}
	v, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return v, clk
}

// mustPrime loads the issuer's keys, so that tests count only later fetches.
func mustPrime(t *testing.T, v *Verifier) {
	t.Helper()
	if err := v.Prime(context.Background()); err != nil {
		t.Fatalf("Prime: %v", err)
	}
}

// noToken fails the test if err's message contains any part of token.
func noToken(t *testing.T, err error, token string) {
	t.Helper()
	if err == nil {
		return
	}
	for _, part := range strings.Split(token, ".") {
		if len(part) >= 8 && strings.Contains(err.Error(), part) {
			t.Fatalf("error message contains part of the token: %v", err)
		}
	}
}
