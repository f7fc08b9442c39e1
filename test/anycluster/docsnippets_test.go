package anycluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// docExampleIssuer is the public URL docs/any-cluster.md's snippets use.
const docExampleIssuer = "https://s3.us-east-1.amazonaws.com/example-cluster-oidc"

// TestAnyClusterDocSnippetsConfigureTheAPIServer runs the real API server
// with exactly the issuer flags each of docs/any-cluster.md's kubeadm, k3s
// and kind snippets sets (the example URL replaced by this cluster's public
// URL), and checks what an operator relies on: the API server names that
// issuer and JWKS URL, signs tokens with it, and STS, trusting only the
// published public URL, exchanges such a token.
func TestAnyClusterDocSnippetsConfigureTheAPIServer(t *testing.T) {
	doc, err := os.ReadFile("../../docs/any-cluster.md")
	if err != nil {
		t.Fatal(err)
	}
	published(t)
	for _, tool := range []string{"kubeadm", "k3s", "kind"} {
		t.Run(tool, func(t *testing.T) {
			block := snippetAfter(t, string(doc), "**"+tool+"**")
			flags, err := issuerFlags(tool, block)
			if err != nil {
				t.Fatalf("the %s snippet in docs/any-cluster.md: %v\n%s", tool, err, block)
			}
			var names []string
			for i, f := range flags {
				name, _, _ := strings.Cut(strings.TrimPrefix(f, "--"), "=")
				names = append(names, name)
				flags[i] = strings.ReplaceAll(f, docExampleIssuer, env.Public.URL)
			}
			if !slices.Contains(names, "service-account-issuer") || !slices.Contains(names, "service-account-jwks-uri") {
				t.Fatalf("the %s snippet sets %v; it must set --service-account-issuer and --service-account-jwks-uri", tool, names)
			}
			if flags[0] != "--service-account-issuer="+env.Public.URL {
				t.Fatalf("the %s snippet's first issuer is not the public URL: %v", tool, flags)
			}

			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			restore, err := env.RestartAPIServerWithIssuerFlags(ctx, flags)
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				if err := restore(ctx); err != nil {
					t.Errorf("restarting the API server with its own flags: %v", err)
				}
			})
			if err != nil {
				t.Fatalf("kube-apiserver with the %s snippet's flags %v: %v", tool, flags, err)
			}

			raw, err := env.Client.Discovery().RESTClient().Get().AbsPath("/.well-known/openid-configuration").DoRaw(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var d struct {
				Issuer  string `json:"issuer"`
				JWKSURI string `json:"jwks_uri"`
			}
			if err := json.Unmarshal(raw, &d); err != nil {
				t.Fatal(err)
			}
			if d.Issuer != env.Public.URL || d.JWKSURI != env.Public.URL+"/openid/v1/jwks" {
				t.Fatalf("with the %s snippet the API server's discovery says issuer %q, jwks_uri %q; want %q and its /openid/v1/jwks",
					tool, d.Issuer, d.JWKSURI, env.Public.URL)
			}
			tok := token(t, "docsnippets", "app")
			if iss := issuerOf(t, tok); iss != env.Public.URL {
				t.Fatalf("with the %s snippet tokens carry iss %q, want %q", tool, iss, env.Public.URL)
			}
			publishOnce(t)
			if err := env.STSAcceptsToken(ctx, tok); err != nil {
				t.Fatalf("with the %s snippet STS refuses the cluster's token: %v", tool, err)
			}
		})
	}
}

// snippetAfter returns the first fenced yaml block after the line starting
// with marker.
func snippetAfter(t *testing.T, doc, marker string) string {
	t.Helper()
	i := strings.Index(doc, "\n"+marker)
	if i < 0 {
		t.Fatalf("docs/any-cluster.md has no paragraph starting %q", marker)
	}
	m := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindStringSubmatch(doc[i:])
	if m == nil {
		t.Fatalf("docs/any-cluster.md has no yaml block after %q", marker)
	}
	return m[1]
}

// issuerFlags turns one tool's snippet into the kube-apiserver flags it
// sets, as that tool would: kubeadm's extraArgs list (v1beta4), k3s's
// kube-apiserver-arg list, kind's kubeadm patch (extraArgs a map, v1beta3).
func issuerFlags(tool, block string) ([]string, error) {
	var flags []string
	switch tool {
	case "kubeadm":
		var c struct {
			APIServer struct {
				ExtraArgs []struct{ Name, Value string } `json:"extraArgs"`
			} `json:"apiServer"`
		}
		if err := yaml.UnmarshalStrict([]byte(block), &c); err != nil {
			return nil, err
		}
		for _, a := range c.APIServer.ExtraArgs {
			flags = append(flags, "--"+a.Name+"="+a.Value)
		}
	case "k3s":
		var c struct {
			Args []string `json:"kube-apiserver-arg"`
		}
		if err := yaml.UnmarshalStrict([]byte(block), &c); err != nil {
			return nil, err
		}
		for _, a := range c.Args {
			flags = append(flags, "--"+a)
		}
	case "kind":
		var c struct {
			Kind       string   `json:"kind"`
			APIVersion string   `json:"apiVersion"`
			Patches    []string `json:"kubeadmConfigPatches"`
		}
		if err := yaml.UnmarshalStrict([]byte(block), &c); err != nil {
			return nil, err
		}
		for _, p := range c.Patches {
			var patch struct {
				Kind      string `json:"kind"`
				APIServer struct {
					ExtraArgs map[string]string `json:"extraArgs"`
				} `json:"apiServer"`
			}
			if err := yaml.UnmarshalStrict([]byte(p), &patch); err != nil {
				return nil, err
			}
			if patch.Kind != "ClusterConfiguration" {
				continue
			}
			// The issuer first: a map has no order, and the API server
			// signs with the first issuer it is given.
			for _, k := range []string{"service-account-issuer", "service-account-jwks-uri"} {
				if v, ok := patch.APIServer.ExtraArgs[k]; ok {
					flags = append(flags, "--"+k+"="+v)
					delete(patch.APIServer.ExtraArgs, k)
				}
			}
			for k, v := range patch.APIServer.ExtraArgs {
				flags = append(flags, "--"+k+"="+v)
			}
		}
	default:
		return nil, fmt.Errorf("no parser for %s", tool)
	}
	if len(flags) == 0 {
		return nil, fmt.Errorf("it sets no flag")
	}
	return flags, nil
}

// issuerOf returns a token's iss claim (unverified: the API server just
// minted it).
func issuerOf(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("a token of %d parts", len(parts))
	}
	b, err := decodeSegment(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c.Iss
}
