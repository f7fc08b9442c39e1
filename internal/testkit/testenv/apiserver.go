package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

func (e *Env) startAPIServer(ctx context.Context, bin, etcdURL string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	e.APIServerURL = fmt.Sprintf("https://127.0.0.1:%d", port)
	if e.IssuerURL == "" {
		e.IssuerURL = e.APIServerURL
	}

	pki := filepath.Join(e.Dir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return err
	}
	certPath, keyPath := filepath.Join(pki, "serving.crt"), filepath.Join(pki, "serving.key")
	if e.CACertPEM, err = servingCert(certPath, keyPath); err != nil {
		return fmt.Errorf("serving certificate: %w", err)
	}
	saKey, saPub := filepath.Join(pki, "sa.key"), filepath.Join(pki, "sa.pub")
	if e.SigningKey, err = signingKey(saKey, saPub); err != nil {
		return fmt.Errorf("service account signing key: %w", err)
	}
	e.servingCertPath, e.servingKeyPath, e.keyPubs = certPath, keyPath, []string{saPub}
	adminToken := randomHex(24)
	tokens := filepath.Join(pki, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(adminToken+",admin,admin,system:masters\n"), 0o600); err != nil {
		return err
	}

	e.apiserverBin = bin
	e.apiserverArgs = []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", port),
		"--cert-dir=" + pki,
		"--tls-cert-file=" + certPath,
		"--tls-private-key-file=" + keyPath,
		"--token-auth-file=" + tokens,
		"--authorization-mode=RBAC",
		"--service-account-issuer=" + e.IssuerURL,
		"--service-account-jwks-uri=" + e.IssuerURL + "/openid/v1/jwks",
		"--service-account-key-file=" + saPub,
		"--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=10.96.0.0/24",
		"--allow-privileged=true",
		// The tests do not load the API server enough to need flow control,
		// and its bootstrap costs seconds of start time.
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v=1",
	}
	p, err := startProcess(e.Dir, "kube-apiserver", bin, e.apiserverArgs, nil)
	if err != nil {
		return err
	}
	e.procs = append(e.procs, p)
	e.apiserver = p
	e.opts.Logf("kube-apiserver starting on %s (issuer %s)", e.APIServerURL, e.IssuerURL)

	e.Config = &rest.Config{
		Host:            e.APIServerURL,
		BearerToken:     adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: e.CACertPEM},
		// Tests create pods in bursts; client-side throttling would only
		// measure itself.
		QPS:   1000,
		Burst: 2000,
	}
	client, err := kubernetes.NewForConfig(e.Config)
	if err != nil {
		return err
	}
	e.Client = client

	if err := e.waitAPIServer(ctx, p); err != nil {
		return err
	}
	e.opts.Logf("kube-apiserver ready after %s", time.Since(e.startedAt).Round(10*time.Millisecond))
	return e.allowAnonymousDiscovery(ctx)
}

func (e *Env) waitAPIServer(ctx context.Context, p *process) error {
	client := e.Client
	return waitFor(ctx, p, 90*time.Second, "kube-apiserver /readyz", func(ctx context.Context) error {
		var code int
		res := client.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).StatusCode(&code)
		if res.Error() != nil {
			return res.Error()
		}
		if code != http.StatusOK {
			return fmt.Errorf("readyz answered %d", code)
		}
		return nil
	})
}

// StopAPIServer stops kube-apiserver (etcd and MinIO keep running), for
// tests of an API outage.
func (e *Env) StopAPIServer() { _ = e.apiserver.Stop(10 * time.Second) }

// StartAPIServer starts kube-apiserver again on the same address with the
// same keys, and waits until it is ready.
func (e *Env) StartAPIServer(ctx context.Context) error {
	p, err := startProcess(e.Dir, "kube-apiserver-restarted", e.apiserverBin, e.apiserverArgs, nil)
	if err != nil {
		return err
	}
	e.procs = append(e.procs, p)
	e.apiserver = p
	return e.waitAPIServer(ctx, p)
}

// allowAnonymousDiscovery lets anyone read the OIDC discovery document and
// keys, as an STS outside the cluster must.
func (e *Env) allowAnonymousDiscovery(ctx context.Context) error {
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "podcreds-testenv:service-account-issuer-discovery"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:service-account-issuer-discovery"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "Group", Name: "system:unauthenticated"}},
	}
	_, err := e.Client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("bind system:service-account-issuer-discovery to system:unauthenticated: %w", err)
	}
	return nil
}

// AnonymousHTTPClient returns an HTTP client that trusts the API server's
// certificate and presents no credentials, as an external verifier would.
func (e *Env) AnonymousHTTPClient() (*http.Client, error) {
	tr, err := rest.TransportFor(&rest.Config{Host: e.APIServerURL, TLSClientConfig: rest.TLSClientConfig{CAData: e.CACertPEM}})
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}, nil
}
