package doctor

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	authnv1 "k8s.io/api/authentication/v1"

	"github.com/podcreds/podcreds/issuer"
	"github.com/podcreds/podcreds/oidc"
)

const docs = "docs/any-cluster.md"

// 1. The API server's issuer is the public URL.
func (r *run) apiServerIssuer(ctx context.Context) {
	const id, title = "api-server-issuer", "API server issuer"
	raw, err := r.o.Kube.GetRaw(ctx, "/.well-known/openid-configuration")
	if err != nil {
		r.add(id, title, Fail, fmt.Sprintf("cannot read the API server's discovery document: %v", err),
			"check --kubeconfig; the identity needs ClusterRole system:service-account-issuer-discovery (and kube-apiserver needs --service-account-issuer)")
		return
	}
	var d issuer.Discovery
	if err := json.Unmarshal(raw, &d); err != nil || d.Issuer == "" {
		r.add(id, title, Fail, "the API server's discovery document names no issuer", "start kube-apiserver with --service-account-issuer="+r.o.PublicURL)
		return
	}
	if d.Issuer != r.o.PublicURL {
		r.add(id, title, Fail, fmt.Sprintf("the API server signs tokens as %q, not %q", d.Issuer, r.o.PublicURL),
			fmt.Sprintf("start kube-apiserver with --service-account-issuer=%s as the first --service-account-issuer (the first one signs; keep the old one after it while old tokens live) and --service-account-jwks-uri=%s/openid/v1/jwks (%s)", r.o.PublicURL, r.o.PublicURL, docs))
		return
	}
	r.apiDiscoveryOK = true
	r.add(id, title, Pass, d.Issuer, "")
}

// 2. The public discovery document is served over trusted https and is
// consistent with itself.
func (r *run) publicDiscovery(ctx context.Context) {
	const id, title = "public-discovery", "public discovery document"
	if _, err := issuer.CheckPublicURL(r.o.PublicURL); err != nil {
		r.add(id, title, Fail, err.Error(), "use an https URL without a trailing slash, query or fragment as the issuer")
		return
	}
	where := r.o.PublicURL + "/" + issuer.DiscoveryObject
	body, res, err := r.get(ctx, where)
	if err != nil {
		r.add(id, title, Fail, err.Error(), fetchFix(err, res != nil, where))
		return
	}
	var d issuer.Discovery
	if err := json.Unmarshal(body, &d); err != nil {
		r.add(id, title, Fail, fmt.Sprintf("%s is not JSON: %v", where, err), "republish it: podcreds issuer publish --once ("+docs+")")
		return
	}
	if d.Issuer != r.o.PublicURL {
		r.add(id, title, Fail, fmt.Sprintf("%s says issuer %q, not %q", where, d.Issuer, r.o.PublicURL),
			"AWS refuses a discovery document whose issuer differs from its URL: republish it from an API server whose --service-account-issuer is "+r.o.PublicURL)
		return
	}
	ju, err := url.Parse(d.JWKSURI)
	if err != nil || ju.Scheme != "https" || ju.Host == "" {
		r.add(id, title, Fail, fmt.Sprintf("jwks_uri %q is not an https URL", d.JWKSURI), "start kube-apiserver with --service-account-jwks-uri="+r.o.PublicURL+"/openid/v1/jwks and republish")
		return
	}
	keys, res, err := r.get(ctx, d.JWKSURI)
	if err != nil {
		r.add(id, title, Fail, "jwks_uri: "+err.Error(), fetchFix(err, res != nil, d.JWKSURI))
		return
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		r.add(id, title, Fail, fmt.Sprintf("%s is served as %q", d.JWKSURI, ct), "serve it as application/json (podcreds issuer sets it on S3; configure your web server for --dir)")
		return
	}
	r.publicJWKS, r.jwksURI = keys, d.JWKSURI
	r.add(id, title, Pass, fmt.Sprintf("%s (issuer and jwks_uri %s agree)", where, d.JWKSURI), "")
}

// fetchFix says what to do about a failed fetch of a public document.
func fetchFix(err error, answered bool, where string) string {
	var unknown x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknown):
		return "AWS only trusts certificates from public CAs: serve the issuer from S3 (its certificate is public) or a host with a publicly trusted certificate (" + docs + ")"
	case errors.As(err, &hostname), errors.As(err, &invalid):
		return "the certificate does not match the host or has expired: fix the certificate of the host in the issuer URL"
	case answered:
		return "publish it (podcreds issuer publish --once, or the issuer Deployment) and make it publicly readable: the bucket policy must allow s3:GetObject on it to everyone (" + docs + ")"
	default:
		return "the host in the issuer URL is unreachable from here; AWS must reach it from the internet, with no source-IP restriction"
	}
}

// 3. Every key the API server serves now is published.
func (r *run) publicKeys(ctx context.Context) {
	const id, title = "public-keys", "current keys published"
	if r.publicJWKS == nil {
		r.add(id, title, Skip, "needs check 2", "")
		return
	}
	raw, err := r.o.Kube.GetRaw(ctx, "/openid/v1/jwks")
	if err != nil {
		r.add(id, title, Fail, fmt.Sprintf("cannot read the API server's JWKS: %v", err), "the identity needs ClusterRole system:service-account-issuer-discovery")
		return
	}
	served, err := issuer.ParseJWKS(raw)
	if err != nil {
		r.add(id, title, Fail, "the API server's JWKS: "+err.Error(), "check kube-apiserver's --service-account-key-file flags")
		return
	}
	published, err := issuer.ParseJWKS(r.publicJWKS)
	if err != nil {
		r.add(id, title, Fail, r.jwksURI+": "+err.Error(), "republish: podcreds issuer publish --once")
		return
	}
	have := map[string]issuer.Key{}
	for _, k := range published {
		have[k.ID] = k
	}
	var missing []string
	for _, k := range served {
		p, ok := have[k.ID]
		if !ok || !sameKey(p, k) {
			missing = append(missing, k.ID)
		}
	}
	if len(missing) > 0 {
		r.add(id, title, Fail, fmt.Sprintf("the public JWKS lacks the API server's key(s) %v: tokens they sign are refused", missing),
			"publish now (podcreds issuer publish --once) and see why the issuer Deployment did not: kubectl -n podcreds-system get events --field-selector reason=PublishFailed")
		return
	}
	r.add(id, title, Pass, fmt.Sprintf("%d of %d published keys are the API server's current ones", len(served), len(published)), "")
}

func sameKey(a, b issuer.Key) bool {
	for _, m := range []string{"kty", "n", "e", "crv", "x", "y"} {
		if a.Members[m] != b.Members[m] {
			return false
		}
	}
	return true
}

// 4. A token minted now verifies against the public keys.
func (r *run) tokenVerifies(ctx context.Context) string {
	const id, title = "token-verifies", "token verifies against the public keys"
	if r.publicJWKS == nil {
		r.add(id, title, Skip, "needs check 2", "")
		return ""
	}
	exp := int64(600)
	tr, err := r.o.Kube.CreateToken(ctx, r.o.Namespace, r.o.ServiceAccount, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{Audiences: []string{r.o.Audience}, ExpirationSeconds: &exp},
	})
	if err != nil {
		r.add(id, title, Fail, fmt.Sprintf("TokenRequest for %s/%s: %v", r.o.Namespace, r.o.ServiceAccount, err),
			"name an existing ServiceAccount with --service-account=<namespace>/<name>; the identity needs create on serviceaccounts/token")
		return ""
	}
	token := tr.Status.Token
	v, err := oidc.New(oidc.Options{Issuer: r.o.PublicURL, Audience: r.o.Audience, HTTPClient: r.o.HTTPClient, RefetchInterval: time.Nanosecond})
	if err == nil {
		_, err = v.Verify(ctx, token)
	}
	if err != nil {
		fix := "see the checks above"
		switch {
		case errors.Is(err, oidc.ErrUnknownKey), errors.Is(err, oidc.ErrSignature):
			fix = "the key that signs tokens is not published: podcreds issuer publish --once"
		case errors.Is(err, oidc.ErrIssuer):
			fix = "start kube-apiserver with --service-account-issuer=" + r.o.PublicURL
		case errors.Is(err, oidc.ErrAudience):
			fix = "add " + r.o.Audience + " to kube-apiserver's --api-audiences"
		}
		r.add(id, title, Fail, err.Error(), fix)
		return token
	}
	r.add(id, title, Pass, fmt.Sprintf("a token for %s/%s (audience %s) verifies", r.o.Namespace, r.o.ServiceAccount, r.o.Audience), "")
	return token
}

// 5. STS exchanges the token for the role.
func (r *run) stsAccepts(ctx context.Context, token string) {
	const id, title = "sts-accepts", "STS accepts the token"
	switch {
	case r.o.RoleARN == "" || r.o.STS == nil:
		r.add(id, title, Skip, "no --role-arn", "")
		return
	case token == "":
		r.add(id, title, Skip, "needs a token (check 4)", "")
		return
	}
	_, err := r.o.STS.AssumeRoleWithWebIdentity(ctx, &sts.AssumeRoleWithWebIdentityInput{
		RoleArn: aws.String(r.o.RoleARN), RoleSessionName: aws.String("podcreds-doctor"),
		WebIdentityToken: aws.String(token), DurationSeconds: aws.Int32(900),
	})
	if err == nil {
		r.add(id, title, Pass, "AssumeRoleWithWebIdentity succeeded for "+r.o.RoleARN, "")
		return
	}
	sub := "system:serviceaccount:" + r.o.Namespace + ":" + r.o.ServiceAccount
	provider := strings.TrimPrefix(r.o.PublicURL, "https://")
	var apiErr smithy.APIError
	code, msg := "", err.Error()
	if errors.As(err, &apiErr) {
		code, msg = apiErr.ErrorCode(), apiErr.ErrorMessage()
	}
	fix := "see the error; " + docs + " lists the trust policy and provider set-up"
	lower := strings.ToLower(msg)
	switch {
	case strings.Contains(lower, "aud") || strings.Contains(lower, "azp") || strings.Contains(lower, "client id"):
		fix = fmt.Sprintf("the token's audience %q is not a client id of the IAM OIDC provider for %s: aws iam add-client-id-to-open-id-connect-provider --open-id-connect-provider-arn arn:aws:iam::<account>:oidc-provider/%s --client-id %s (or run podcreds with --audience set to the provider's client id)", r.o.Audience, provider, provider, r.o.Audience)
	case code == "InvalidIdentityToken" && strings.Contains(lower, "provider"):
		fix = fmt.Sprintf("create the IAM OIDC provider: aws iam create-open-id-connect-provider --url %s --client-id-list %s", r.o.PublicURL, r.o.Audience)
	case code == "InvalidIdentityToken" || code == "IDPCommunicationError":
		fix = "STS could not verify the token with the keys it fetched from " + r.o.PublicURL + ": make sure checks 2-4 pass, then retry (IAM caches keys for a while)"
	case code == "AccessDenied" || strings.Contains(lower, "role"):
		fix = fmt.Sprintf("allow %s to assume %s: its trust policy needs principal Federated arn:aws:iam::<account>:oidc-provider/%s, action sts:AssumeRoleWithWebIdentity, and conditions StringEquals %s:sub = %s and %s:aud = %s (%s)", sub, r.o.RoleARN, provider, provider, sub, provider, r.o.Audience, docs)
	}
	detail := msg
	if code != "" {
		detail = code + ": " + msg
	}
	r.add(id, title, Fail, detail, fix)
}

// 6. The IAM OIDC provider exists with the audience as a client id.
func (r *run) iamProvider(ctx context.Context) {
	const id, title = "iam-provider", "IAM OIDC provider"
	if r.o.IAM == nil {
		r.add(id, title, Skip, "no --iam", "")
		return
	}
	account := r.o.AccountID
	if account == "" {
		if parts := strings.Split(r.o.RoleARN, ":"); len(parts) >= 5 {
			account = parts[4]
		}
	}
	if account == "" {
		r.add(id, title, Fail, "no AWS account: give --account-id or --role-arn", "pass --account-id=<12 digits>")
		return
	}
	provider := strings.TrimPrefix(r.o.PublicURL, "https://")
	arn := "arn:aws:iam::" + account + ":oidc-provider/" + provider
	out, err := r.o.IAM.GetOpenIDConnectProvider(ctx, &iam.GetOpenIDConnectProviderInput{OpenIDConnectProviderArn: aws.String(arn)})
	if err != nil {
		var apiErr smithy.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode() == "NoSuchEntity" {
			r.add(id, title, Fail, "no IAM OIDC provider "+arn,
				fmt.Sprintf("aws iam create-open-id-connect-provider --url %s --client-id-list %s", r.o.PublicURL, r.o.Audience))
			return
		}
		r.add(id, title, Fail, fmt.Sprintf("GetOpenIDConnectProvider %s: %v", arn, err), "the identity running doctor needs iam:GetOpenIDConnectProvider")
		return
	}
	for _, c := range out.ClientIDList {
		if c == r.o.Audience {
			r.add(id, title, Pass, fmt.Sprintf("%s lists client id %s", arn, r.o.Audience), "")
			return
		}
	}
	r.add(id, title, Fail, fmt.Sprintf("%s lists client ids %v, not %s", arn, out.ClientIDList, r.o.Audience),
		fmt.Sprintf("aws iam add-client-id-to-open-id-connect-provider --open-id-connect-provider-arn %s --client-id %s", arn, r.o.Audience))
}
