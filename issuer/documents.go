package issuer

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"sort"
	"strings"
)

// Bounds on what the API server may hand us. A Kubernetes API server serves
// one key per --service-account-key-file; a hundred is far beyond any real
// rotation and keeps a broken source from bloating the published set.
const (
	maxDocumentBytes = 1 << 20
	maxKeys          = 100
)

// Discovery is the part of an OIDC discovery document the publisher reads and
// writes. The published document is rendered from these fields alone, so it
// is byte-for-byte stable across syncs.
type Discovery struct {
	Issuer                           string   `json:"issuer"`
	JWKSURI                          string   `json:"jwks_uri"`
	ResponseTypesSupported           []string `json:"response_types_supported"`
	SubjectTypesSupported            []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported []string `json:"id_token_signing_alg_values_supported"`
}

// ParseDiscovery decodes the API server's discovery document and checks it
// against the public issuer URL the publisher is configured with: the issuer
// must equal it exactly (it is what every token's iss says, and what AWS
// fetches), and the JWKS must live beneath it over https, so the publisher
// can write it to the same target. It returns the JWKS location relative to
// the issuer (e.g. "openid/v1/jwks").
func ParseDiscovery(b []byte, publicURL string) (*Discovery, string, error) {
	if len(b) > maxDocumentBytes {
		return nil, "", fmt.Errorf("discovery document is %d bytes, more than %d", len(b), maxDocumentBytes)
	}
	var d Discovery
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, "", fmt.Errorf("discovery document is not JSON: %w", err)
	}
	if d.Issuer == "" {
		return nil, "", errors.New("discovery document has no issuer")
	}
	if d.Issuer != publicURL {
		return nil, "", fmt.Errorf("the API server's issuer is %q, not the public URL %q: start kube-apiserver with --service-account-issuer=%s (and --service-account-jwks-uri beneath it), or publish with --public-url=%s", d.Issuer, publicURL, publicURL, d.Issuer)
	}
	rel, err := jwksPath(d.Issuer, d.JWKSURI)
	if err != nil {
		return nil, "", err
	}
	if len(d.ResponseTypesSupported) == 0 {
		d.ResponseTypesSupported = []string{"id_token"}
	}
	if len(d.SubjectTypesSupported) == 0 {
		d.SubjectTypesSupported = []string{"public"}
	}
	if len(d.IDTokenSigningAlgValuesSupported) == 0 {
		d.IDTokenSigningAlgValuesSupported = []string{"RS256"}
	}
	return &d, rel, nil
}

// jwksPath returns where jwksURI lies beneath issuer, or why it cannot be
// published beside the discovery document.
func jwksPath(issuer, jwksURI string) (string, error) {
	iu, err := CheckPublicURL(issuer)
	if err != nil {
		return "", fmt.Errorf("issuer: %w", err)
	}
	ju, err := url.Parse(jwksURI)
	if err != nil || jwksURI == "" {
		return "", fmt.Errorf("the discovery document's jwks_uri %q is not a URL: start kube-apiserver with --service-account-jwks-uri=%s/openid/v1/jwks", jwksURI, issuer)
	}
	prefix := strings.TrimSuffix(iu.Path, "/") + "/"
	if ju.Scheme != "https" || ju.Host != iu.Host || !strings.HasPrefix(ju.Path, prefix) || ju.RawQuery != "" || ju.Fragment != "" {
		return "", fmt.Errorf("the discovery document's jwks_uri %q is not beneath the issuer %q, so it cannot be published with it: start kube-apiserver with --service-account-jwks-uri=%s/openid/v1/jwks", jwksURI, issuer, issuer)
	}
	rel := strings.TrimPrefix(ju.Path, prefix)
	if err := checkRelPath(rel); err != nil {
		return "", fmt.Errorf("jwks_uri %q: %w", jwksURI, err)
	}
	return rel, nil
}

// CheckPublicURL checks that u can be an issuer AWS accepts: https, a host,
// no query, fragment, user or trailing slash.
func CheckPublicURL(u string) (*url.URL, error) {
	p, err := url.Parse(u)
	if err != nil {
		return nil, fmt.Errorf("%q is not a URL: %w", u, err)
	}
	switch {
	case p.Scheme != "https":
		return nil, fmt.Errorf("%q is not https: AWS fetches issuers over https only", u)
	case p.Host == "":
		return nil, fmt.Errorf("%q has no host", u)
	case p.RawQuery != "" || p.Fragment != "" || p.User != nil || p.Opaque != "":
		return nil, fmt.Errorf("%q must be a plain https URL (no query, fragment or user)", u)
	case strings.HasSuffix(p.Path, "/"):
		return nil, fmt.Errorf("%q ends in a slash; the issuer in tokens has none", u)
	}
	if p.Path != "" {
		if err := checkRelPath(strings.TrimPrefix(p.Path, "/")); err != nil {
			return nil, fmt.Errorf("%q: %w", u, err)
		}
	}
	return p, nil
}

// checkRelPath refuses paths that could escape the target's root.
func checkRelPath(p string) error {
	if p == "" || strings.HasPrefix(p, "/") || strings.Contains(p, "\\") {
		return fmt.Errorf("path %q is not a relative path", p)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("path %q has an empty, . or .. segment", p)
		}
	}
	return nil
}

// Render returns the document the publisher writes: indented JSON with a
// trailing newline, stable for equal input.
func (d *Discovery) Render() []byte { return render(d) }

// Key is one public key of a JWKS, kept as the members the API server sent
// (so nothing the relying party might read is lost), indexed by its kid.
type Key struct {
	ID      string
	Members map[string]any
}

// ParseJWKS decodes a JWKS and checks every key: a unique, non-empty kid;
// kty RSA (n and e, at least 2048 bits) or EC (crv, x, y); no private
// members. It refuses an empty set: publishing one would make every token
// unverifiable. A JWKS with any bad key is refused whole rather than
// published in part, since the API server never serves one.
func ParseJWKS(b []byte) ([]Key, error) {
	if len(b) > maxDocumentBytes {
		return nil, fmt.Errorf("JWKS is %d bytes, more than %d", len(b), maxDocumentBytes)
	}
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("JWKS is not JSON: %w", err)
	}
	if len(doc.Keys) == 0 {
		return nil, errors.New("JWKS has no keys: refusing to publish a set that would make every token unverifiable")
	}
	if len(doc.Keys) > maxKeys {
		return nil, fmt.Errorf("JWKS has %d keys, more than %d", len(doc.Keys), maxKeys)
	}
	keys := make([]Key, 0, len(doc.Keys))
	seen := map[string]bool{}
	for i, m := range doc.Keys {
		k, err := checkKey(m)
		if err != nil {
			return nil, fmt.Errorf("JWKS key %d: %w", i, err)
		}
		if seen[k.ID] {
			return nil, fmt.Errorf("JWKS key %d: kid %q appears twice", i, k.ID)
		}
		seen[k.ID] = true
		keys = append(keys, k)
	}
	return keys, nil
}

func checkKey(m map[string]any) (Key, error) {
	kid, _ := m["kid"].(string)
	if kid == "" {
		return Key{}, errors.New("no kid")
	}
	for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
		if _, ok := m[private]; ok {
			return Key{}, fmt.Errorf("kid %q carries the private member %q: refusing to publish it", kid, private)
		}
	}
	if use, ok := m["use"]; ok && use != "sig" {
		return Key{}, fmt.Errorf("kid %q has use %v, not sig", kid, use)
	}
	switch m["kty"] {
	case "RSA":
		n, err := b64Member(m, "n")
		if err != nil {
			return Key{}, fmt.Errorf("kid %q: %w", kid, err)
		}
		if _, err := b64Member(m, "e"); err != nil {
			return Key{}, fmt.Errorf("kid %q: %w", kid, err)
		}
		if bits := new(big.Int).SetBytes(n).BitLen(); bits < 2048 {
			return Key{}, fmt.Errorf("kid %q: RSA key of %d bits, fewer than 2048", kid, bits)
		}
	case "EC":
		if crv, _ := m["crv"].(string); crv != "P-256" && crv != "P-384" && crv != "P-521" {
			return Key{}, fmt.Errorf("kid %q: EC curve %v not supported", kid, m["crv"])
		}
		for _, name := range []string{"x", "y"} {
			if _, err := b64Member(m, name); err != nil {
				return Key{}, fmt.Errorf("kid %q: %w", kid, err)
			}
		}
	default:
		return Key{}, fmt.Errorf("kid %q: key type %v is neither RSA nor EC", kid, m["kty"])
	}
	return Key{ID: kid, Members: m}, nil
}

func b64Member(m map[string]any, name string) ([]byte, error) {
	s, _ := m[name].(string)
	if s == "" {
		return nil, fmt.Errorf("member %q missing", name)
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("member %q is not base64url", name)
	}
	return b, nil
}

// RenderJWKS returns the JWKS document for keys, sorted by kid so equal sets
// render to equal bytes.
func RenderJWKS(keys []Key) []byte {
	sorted := append([]Key(nil), keys...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].ID < sorted[j].ID })
	members := make([]map[string]any, len(sorted))
	for i, k := range sorted {
		members[i] = k.Members
	}
	return render(map[string]any{"keys": members})
}

func render(v any) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic(err) // only maps, slices, strings and json.Number
	}
	return append(b, '\n')
}
