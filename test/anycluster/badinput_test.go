package anycluster

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestRefusedPublishesChangeNothing: a bucket that denies writes and a
// directory that is not writable each give a clear error and a non-zero
// exit, and leave what was published as it was. (A malformed or empty JWKS
// from the API server: issuer's TestBadInputChangesNothing, since a real
// API server never serves one.)
func TestRefusedPublishesChangeNothing(t *testing.T) {
	publishOnce(t)
	before := map[string][]byte{}
	for _, k := range []string{".well-known/openid-configuration", "openid/v1/jwks", "podcreds-issuer-state.json"} {
		before[k] = getObject(t, k)
	}
	unchanged := func(t *testing.T) {
		t.Helper()
		for k, b := range before {
			if got := getObject(t, k); !bytes.Equal(got, b) {
				t.Errorf("%s changed", k)
			}
		}
	}

	t.Run("a bucket that denies writes", func(t *testing.T) {
		// Credentials that may read the bucket but not write it, and a
		// published discovery document that differs from what the
		// publisher would write (a trailing blank line), so it must try.
		ak, sk, st := readOnlyCredentials(t)
		disc := append(append([]byte(nil), before[".well-known/openid-configuration"]...), '\n')
		putObject(t, ".well-known/openid-configuration", disc)
		defer putObject(t, ".well-known/openid-configuration", before[".well-known/openid-configuration"])
		envs := []string{"AWS_ACCESS_KEY_ID=" + ak, "AWS_SECRET_ACCESS_KEY=" + sk, "AWS_SESSION_TOKEN=" + st,
			"AWS_CA_BUNDLE=" + env.Public.CAFile, "KUBECONFIG=" + kubeconfig(t)}
		r := podcreds(t, envs, append([]string{"issuer", "publish", "--once"}, bucketFlags()...)...)
		if r.code == 0 || !strings.Contains(r.stderr, "write s3://oidc/.well-known/openid-configuration") || !strings.Contains(r.stderr, "s3:PutObject") {
			t.Fatalf("exit %d, stderr %q: want a refused write naming the object and the permission", r.code, r.stderr)
		}
		if got := getObject(t, ".well-known/openid-configuration"); !bytes.Equal(got, disc) {
			t.Error("the discovery document changed")
		}
		for _, k := range []string{"openid/v1/jwks", "podcreds-issuer-state.json"} {
			if got := getObject(t, k); !bytes.Equal(got, before[k]) {
				t.Errorf("%s changed", k)
			}
		}
	})

	t.Run("credentials the bucket does not know", func(t *testing.T) {
		envs := []string{"AWS_ACCESS_KEY_ID=" + env.Public.RootUser, "AWS_SECRET_ACCESS_KEY=wrong-secret",
			"AWS_CA_BUNDLE=" + env.Public.CAFile, "KUBECONFIG=" + kubeconfig(t)}
		r := podcreds(t, envs, append([]string{"issuer", "publish", "--once"}, bucketFlags()...)...)
		if r.code == 0 || !strings.Contains(r.stderr, "s3://oidc/") {
			t.Fatalf("exit %d, stderr %q: want a failure naming the bucket", r.code, r.stderr)
		}
		unchanged(t)
	})

	t.Run("a directory that is not writable", func(t *testing.T) {
		dir := sharedDir(t) + "/target"
		if err := os.Mkdir(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(dir, 0o755)
		r := runUnprivileged(t, "issuer", "publish", "--once", "--public-url="+env.Public.URL, "--dir="+dir)
		if r.code == 0 || !strings.Contains(r.stderr, "publish podcreds-issuer-state.json") || !strings.Contains(r.stderr, "needs write access to "+dir) {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("the refused publish left %d entries behind", len(entries))
		}
	})

	t.Run("a directory that does not exist", func(t *testing.T) {
		r := podcreds(t, []string{"KUBECONFIG=" + kubeconfig(t)}, "issuer", "publish", "--once", "--public-url="+env.Public.URL, "--dir=/nonexistent/podcreds")
		if r.code == 0 || !strings.Contains(r.stderr, "publish directory") {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
	})

	t.Run("a public URL that is not the API server's issuer", func(t *testing.T) {
		r := podcreds(t, writerEnv(t), "issuer", "publish", "--once", "--public-url="+env.Public.Endpoint+"/elsewhere", "--bucket=oidc",
			"--s3-endpoint="+env.Public.Endpoint, "--s3-path-style", "--s3-region=us-east-1")
		if r.code == 0 || !strings.Contains(r.stderr, "not the public URL") {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
		unchanged(t)
	})
}
