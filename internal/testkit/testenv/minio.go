package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// roleARNPattern finds the role MinIO prints at start ("IAM Roles: arn:…").
var roleARNPattern = regexp.MustCompile(`arn:minio:iam:[a-z0-9-]*::role/[A-Za-z0-9_-]+`)

func (e *Env) startMinIO(ctx context.Context, bin string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	consolePort, err := freePort()
	if err != nil {
		return err
	}
	host := e.opts.MinIOHost
	if host == "" {
		host = "127.0.0.1"
	}
	e.S3Endpoint = "http://" + net.JoinHostPort(host, strconv.Itoa(port))
	e.STSEndpoint = e.S3Endpoint
	e.MinIORootUser = "testenv-" + randomHex(4)
	e.MinIORootPassword = randomHex(16)

	// MinIO reaches the issuer over https and trusts what is in certs/CAs.
	// Each (re)start of the STS gets its own name, log and data: a restart
	// stands for a fresh STS that has cached nothing.
	name := "minio"
	if e.stsStarts > 0 {
		name = fmt.Sprintf("minio-%d", e.stsStarts)
	}
	e.stsStarts++
	certs := filepath.Join(e.Dir, name+"-certs")
	if err := os.MkdirAll(filepath.Join(certs, "CAs"), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(certs, "CAs", "kube-apiserver.pem"), e.CACertPEM, 0o600); err != nil {
		return err
	}
	p, err := startProcess(e.Dir, name, bin, []string{
		"server",
		"--address", net.JoinHostPort(host, strconv.Itoa(port)),
		"--console-address", fmt.Sprintf("127.0.0.1:%d", consolePort),
		"--certs-dir", certs,
		filepath.Join(e.Dir, name+"-data"),
	}, []string{
		"MINIO_ROOT_USER=" + e.MinIORootUser,
		"MINIO_ROOT_PASSWORD=" + e.MinIORootPassword,
		"MINIO_IDENTITY_OPENID_CONFIG_URL=" + e.IssuerURL + "/.well-known/openid-configuration",
		"MINIO_IDENTITY_OPENID_CLIENT_ID=" + Audience,
		// MinIO treats an empty secret as a public client and behaves
		// differently; always set one.
		"MINIO_IDENTITY_OPENID_CLIENT_SECRET=" + randomHex(16),
		"MINIO_IDENTITY_OPENID_ROLE_POLICY=readwrite",
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"NO_COLOR=1",
	})
	if err != nil {
		return err
	}
	e.procs = append(e.procs, p)
	e.opts.Logf("minio starting on %s", e.S3Endpoint)

	err = waitFor(ctx, p, 60*time.Second, "minio health", func(ctx context.Context) error {
		return httpOK(ctx, e.S3Endpoint+"/minio/health/ready")
	})
	if err != nil {
		return err
	}
	err = waitFor(ctx, p, 30*time.Second, "minio role ARN in its log", func(context.Context) error {
		b, err := os.ReadFile(p.logPath)
		if err != nil {
			return err
		}
		if e.RoleARN = roleARNPattern.FindString(string(b)); e.RoleARN == "" {
			return fmt.Errorf("no %q line yet", "IAM Roles:")
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Health is ready before OpenID is: only a successful exchange proves
	// MinIO has fetched the issuer's discovery document and keys.
	token, err := e.probeToken(ctx)
	if err != nil {
		return fmt.Errorf("token for the STS readiness probe: %w", err)
	}
	client := e.STSClient()
	err = waitFor(ctx, p, 60*time.Second, "minio AssumeRoleWithWebIdentity", func(ctx context.Context) error {
		_, err := client.AssumeRoleWithWebIdentity(ctx, &sts.AssumeRoleWithWebIdentityInput{
			RoleArn:          aws.String(e.RoleARN),
			RoleSessionName:  aws.String("testenv-probe"),
			WebIdentityToken: aws.String(token),
			DurationSeconds:  aws.Int32(900),
		})
		return err
	})
	if err != nil {
		return err
	}
	e.opts.Logf("minio STS ready after %s, role %s", time.Since(e.startedAt).Round(10*time.Millisecond), e.RoleARN)
	return nil
}

// probeToken mints an unbound token for a ServiceAccount of the environment's
// own, used only to prove MinIO's STS is live.
func (e *Env) probeToken(ctx context.Context) (string, error) {
	const ns, sa = "testenv-system", "sts-probe"
	if err := e.EnsureNamespace(ctx, ns); err != nil {
		return "", err
	}
	_, err := e.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return "", err
	}
	tr, err := e.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{Audience}, ExpirationSeconds: aws.Int64(600)},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return tr.Status.Token, nil
}

// STSClient returns an anonymous aws-sdk-go-v2 STS client for MinIO.
func (e *Env) STSClient() *sts.Client {
	return sts.New(sts.Options{
		Region:       Region,
		BaseEndpoint: aws.String(e.STSEndpoint),
		Credentials:  aws.AnonymousCredentials{},
	})
}

func httpOK(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %d", url, res.StatusCode)
	}
	return nil
}

// tlsTransport is an HTTP transport that trusts only caPEM.
func tlsTransport(caPEM []byte) (*http.Transport, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("no certificate in the CA PEM")
	}
	return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}, nil
}
