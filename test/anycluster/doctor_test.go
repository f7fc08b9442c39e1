package anycluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/podcreds/podcreds/internal/testkit/testenv"
)

// fakeIAM answers GetOpenIDConnectProvider (the query protocol IAM speaks)
// from a map of provider ARN to client ids. No IAM runs here; this is the
// one check the issue allows a fake for.
func fakeIAM(t *testing.T, providers map[string][]string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil || r.Form.Get("Action") != "GetOpenIDConnectProvider" {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/xml")
		ids, ok := providers[r.Form.Get("OpenIDConnectProviderArn")]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type><Code>NoSuchEntity</Code><Message>OpenIDConnect Provider not found for arn %s</Message></Error><RequestId>1</RequestId></ErrorResponse>`, r.Form.Get("OpenIDConnectProviderArn"))
			return
		}
		var members strings.Builder
		for _, id := range ids {
			fmt.Fprintf(&members, "<member>%s</member>", id)
		}
		fmt.Fprintf(w, `<GetOpenIDConnectProviderResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><GetOpenIDConnectProviderResult><ClientIDList>%s</ClientIDList><ThumbprintList></ThumbprintList><Url>%s</Url><CreateDate>2026-01-01T00:00:00Z</CreateDate></GetOpenIDConnectProviderResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></GetOpenIDConnectProviderResponse>`, members.String(), env.Public.URL)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

type doctorReport struct {
	OK     bool `json:"ok"`
	Checks []struct {
		ID, Title, Detail, Fix string
		Status                 string
	} `json:"checks"`
}

// doctor runs `podcreds doctor --output json` and decodes the report.
func doctor(t *testing.T, extraEnv []string, args ...string) (int, doctorReport) {
	t.Helper()
	r := podcreds(t, extraEnv, append([]string{"doctor", "--output=json"}, args...)...)
	var rep doctorReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("doctor --output json printed no JSON (exit %d): %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	return r.code, rep
}

func (r doctorReport) status(id string) (string, string, string) {
	for _, c := range r.Checks {
		if c.ID == id {
			return c.Status, c.Detail, c.Fix
		}
	}
	return "missing", "", ""
}

const account = "123456789012"

func TestDoctor(t *testing.T) {
	published(t)
	ctx := context.Background()
	if _, err := env.CreateServiceAccount(ctx, "doctor", "app", nil); err != nil {
		t.Fatal(err)
	}
	provider := "arn:aws:iam::" + account + ":oidc-provider/" + strings.TrimPrefix(env.Public.URL, "https://")
	iamURL := fakeIAM(t, map[string][]string{provider: {testenv.Audience}})
	baseEnv := []string{"KUBECONFIG=" + kubeconfig(t), "AWS_ACCESS_KEY_ID=AKIDDOCTOR", "AWS_SECRET_ACCESS_KEY=doctor", "AWS_REGION=us-east-1"}
	good := []string{"--public-url=" + env.Public.URL, "--ca-file=" + env.Public.CAFile, "--service-account=doctor/app",
		"--role-arn=" + env.RoleARN, "--sts-endpoint=" + env.STSEndpoint, "--iam", "--iam-endpoint=" + iamURL, "--account-id=" + account}
	with := func(replace ...string) []string {
		args := append([]string(nil), good...)
		for _, r := range replace {
			name, _, _ := strings.Cut(r, "=")
			found := false
			for i, a := range args {
				if strings.HasPrefix(a, name+"=") || a == name {
					args[i], found = r, true
				}
			}
			if !found {
				args = append(args, r)
			}
		}
		var out []string
		for _, a := range args {
			if !strings.HasSuffix(a, "=") { // "--flag=" drops the flag
				out = append(out, a)
			}
		}
		return out
	}

	t.Run("a correct setup passes every check", func(t *testing.T) {
		code, rep := doctor(t, baseEnv, good...)
		if code != 0 || !rep.OK || len(rep.Checks) != 6 {
			t.Fatalf("exit %d, report %+v", code, rep)
		}
		for _, c := range rep.Checks {
			if c.Status != "pass" {
				t.Errorf("check %s: %s %s", c.ID, c.Status, c.Detail)
			}
		}
		// The text form: one line per check, all ✓.
		r := podcreds(t, baseEnv, append([]string{"doctor"}, good...)...)
		if r.code != 0 || strings.Count(r.stdout, "✓") != 6 || strings.Contains(r.stdout, "✗") {
			t.Fatalf("text output:\n%s", r.stdout)
		}
	})

	for _, tc := range []struct {
		name    string
		env     []string
		args    []string
		prepare func(t *testing.T) (restore func())
		check   string // the check that must fail
		fix     string // what its fix must say
	}{
		{
			name:  "a wrong issuer URL",
			args:  with("--public-url=" + env.Public.Endpoint + "/other-cluster"),
			check: "api-server-issuer", fix: "--service-account-issuer=" + env.Public.Endpoint + "/other-cluster",
		},
		{
			name: "a stale JWKS missing the current key",
			args: good,
			prepare: func(t *testing.T) func() {
				stale := map[string]any{"keys": []any{jwkOf(t, rsaKey(t), "stale")}}
				b, _ := json.Marshal(stale)
				putObject(t, "openid/v1/jwks", b)
				return func() { putObject(t, "openid/v1/jwks", []byte("{}")); publishOnce(t) }
			},
			check: "public-keys", fix: "podcreds issuer publish --once",
		},
		{
			name:  "an untrusted https certificate",
			args:  with("--ca-file="),
			check: "public-discovery", fix: "public CAs",
		},
		{
			name:  "a wrong audience",
			args:  with("--audience=my-cluster"),
			check: "sts-accepts", fix: "add-client-id-to-open-id-connect-provider",
		},
		{
			name:  "the IAM provider lacks the audience",
			args:  with("--audience=my-cluster"),
			check: "iam-provider", fix: "--client-id my-cluster",
		},
		{
			name:  "no IAM OIDC provider",
			args:  with("--account-id=210987654321"),
			check: "iam-provider", fix: "aws iam create-open-id-connect-provider --url " + env.Public.URL,
		},
		{
			name:  "STS refusing the role",
			args:  with("--role-arn=arn:minio:iam:::role/not-trusted"),
			check: "sts-accepts", fix: "trust policy",
		},
		{
			name:  "an unreachable issuer host",
			args:  with("--public-url=https://127.0.0.1:1/oidc"),
			check: "public-discovery", fix: "unreachable",
		},
	} {
		t.Run(tc.name+" fails its check with the fix", func(t *testing.T) {
			if tc.prepare != nil {
				restore := tc.prepare(t)
				defer restore()
			}
			code, rep := doctor(t, append(baseEnv, tc.env...), tc.args...)
			st, detail, fix := rep.status(tc.check)
			if code == 0 || rep.OK {
				t.Errorf("exit %d, ok %v: a broken setup must exit non-zero", code, rep.OK)
			}
			if st != "fail" || !strings.Contains(fix, tc.fix) {
				t.Errorf("check %s: %s (%s), fix %q; want fail with a fix saying %q", tc.check, st, detail, fix, tc.fix)
			}
		})
	}
}
