// Package doctor checks, link by link, the chain AWS relies on to accept a
// cluster's ServiceAccount tokens: the API server's issuer, the public
// discovery document and keys, a freshly minted token against those keys,
// and optionally STS and IAM. Every failed check carries the exact fix.
//
// It reads only: TokenRequest is its one write, and the token it mints is
// never printed.
package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	authnv1 "k8s.io/api/authentication/v1"
)

// Status is a check's outcome.
type Status string

// Outcomes. A skipped check is one not asked for (no --role-arn) or one that
// depends on a check that failed.
const (
	Pass Status = "pass"
	Fail Status = "fail"
	Skip Status = "skip"
)

// Check is one line of the report.
type Check struct {
	ID     string `json:"id"`
	Title  string `json:"title"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Kube is what doctor asks of the API server (kube.Client satisfies it).
type Kube interface {
	GetRaw(ctx context.Context, path string) ([]byte, error)
	CreateToken(ctx context.Context, namespace, serviceAccount string, req *authnv1.TokenRequest) (*authnv1.TokenRequest, error)
}

// STS is the one call doctor makes of STS.
type STS interface {
	AssumeRoleWithWebIdentity(ctx context.Context, in *sts.AssumeRoleWithWebIdentityInput, opts ...func(*sts.Options)) (*sts.AssumeRoleWithWebIdentityOutput, error)
}

// IAM is the one call doctor makes of IAM.
type IAM interface {
	GetOpenIDConnectProvider(ctx context.Context, in *iam.GetOpenIDConnectProviderInput, opts ...func(*iam.Options)) (*iam.GetOpenIDConnectProviderOutput, error)
}

// Options says what to check.
type Options struct {
	PublicURL string
	Audience  string
	// Namespace and ServiceAccount name whose token is minted for checks
	// 4 and 5 (the role's trust policy must name it for 5).
	Namespace, ServiceAccount string
	Kube                      Kube
	// HTTPClient fetches the public documents as AWS would: over https,
	// trusting the system's roots (plus any CA the operator added).
	HTTPClient *http.Client
	// RoleARN and STS enable check 5; IAM and AccountID (default: the
	// role's account) enable check 6.
	RoleARN   string
	STS       STS
	IAM       IAM
	AccountID string
}

// Run performs every check and returns them in order.
func Run(ctx context.Context, o Options) []Check {
	if o.Audience == "" {
		o.Audience = "sts.amazonaws.com"
	}
	r := &run{o: o}
	r.apiServerIssuer(ctx)
	r.publicDiscovery(ctx)
	r.publicKeys(ctx)
	token := r.tokenVerifies(ctx)
	r.stsAccepts(ctx, token)
	r.iamProvider(ctx)
	return r.checks
}

// OK reports whether no check failed.
func OK(checks []Check) bool {
	for _, c := range checks {
		if c.Status == Fail {
			return false
		}
	}
	return true
}

// run carries what earlier checks learnt to later ones.
type run struct {
	o      Options
	checks []Check

	apiDiscoveryOK bool
	publicJWKS     []byte // nil unless check 2 passed and the JWKS was fetched
	jwksURI        string
}

func (r *run) add(id, title string, st Status, detail, fix string) {
	r.checks = append(r.checks, Check{ID: id, Title: title, Status: st, Detail: detail, Fix: fix})
}

// maxBody bounds what doctor reads from any URL.
const maxBody = 1 << 20

// get fetches a public URL; it returns the body only for a 200.
func (r *run) get(ctx context.Context, url string) ([]byte, *http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	res, err := r.o.HTTPClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxBody))
	if err != nil {
		return nil, res, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, res, fmt.Errorf("GET %s answered %s", url, res.Status)
	}
	return b, res, nil
}

// PrintText writes one line per check, ✓ or ✗ (or - for skipped), and for
// every ✗ the fix, indented beneath it.
func PrintText(w io.Writer, checks []Check) {
	for i, c := range checks {
		mark := map[Status]string{Pass: "✓", Fail: "✗", Skip: "-"}[c.Status]
		fmt.Fprintf(w, "%s %d. %s: %s\n", mark, i+1, c.Title, c.Detail)
		if c.Status == Fail && c.Fix != "" {
			fmt.Fprintf(w, "    fix: %s\n", strings.ReplaceAll(c.Fix, "\n", "\n         "))
		}
	}
}

// PrintJSON writes {"ok": bool, "checks": [...]} for automation.
func PrintJSON(w io.Writer, checks []Check) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		OK     bool    `json:"ok"`
		Checks []Check `json:"checks"`
	}{OK(checks), checks})
}
