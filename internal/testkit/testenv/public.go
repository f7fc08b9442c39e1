package testenv

import (
	"context"
	"crypto/rsa"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// IssuerBucket is the bucket that hosts the public issuer documents.
const IssuerBucket = "oidc"

// PublicIssuer is the public side of a self-managed cluster's issuer: a
// MinIO serving IssuerBucket over https (with the environment's CA), whose
// discovery document and JWKS are publicly readable and written only with
// the root credentials, as docs/any-cluster.md sets up S3.
type PublicIssuer struct {
	// URL is the issuer (https://127.0.0.1:<port>/oidc).
	URL string
	// Endpoint is the bucket host's S3 endpoint (https).
	Endpoint string
	// CAFile holds the CA that signs the bucket host's certificate.
	CAFile string
	// RootUser and RootPassword may write the bucket.
	RootUser, RootPassword string

	port int
	proc *process
}

func (e *Env) planPublicIssuer() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	e.Public = &PublicIssuer{
		Endpoint: fmt.Sprintf("https://127.0.0.1:%d", port),
		port:     port,
		RootUser: "issuer-" + randomHex(4), RootPassword: randomHex(16),
	}
	e.Public.URL = e.Public.Endpoint + "/" + IssuerBucket
	e.IssuerURL = e.Public.URL
	return nil
}

// startIssuerBucket starts the https MinIO with the API server's serving
// certificate (itself a CA for 127.0.0.1) and creates the public bucket.
func (e *Env) startIssuerBucket(ctx context.Context) error {
	pub := e.Public
	certs := filepath.Join(e.Dir, "issuer-minio-certs")
	if err := os.MkdirAll(certs, 0o700); err != nil {
		return err
	}
	for src, dst := range map[string]string{e.servingCertPath: "public.crt", e.servingKeyPath: "private.key"} {
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(certs, dst), b, 0o600); err != nil {
			return err
		}
	}
	pub.CAFile = filepath.Join(e.Dir, "ca.pem")
	if err := os.WriteFile(pub.CAFile, e.CACertPEM, 0o644); err != nil {
		return err
	}
	consolePort, err := freePort()
	if err != nil {
		return err
	}
	p, err := startProcess(e.Dir, "issuer-minio", e.minioBin, []string{
		"server", "--address", "127.0.0.1:" + strconv.Itoa(pub.port),
		"--console-address", "127.0.0.1:" + strconv.Itoa(consolePort),
		"--certs-dir", certs, filepath.Join(e.Dir, "issuer-minio-data"),
	}, []string{
		"MINIO_ROOT_USER=" + pub.RootUser, "MINIO_ROOT_PASSWORD=" + pub.RootPassword,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "NO_COLOR=1",
	})
	if err != nil {
		return err
	}
	e.procs = append(e.procs, p)
	pub.proc = p
	e.opts.Logf("issuer bucket host (minio, https) starting on %s", pub.Endpoint)
	hc, err := e.PublicHTTPClient()
	if err != nil {
		return err
	}
	err = waitFor(ctx, p, 60*time.Second, "issuer minio health", func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, pub.Endpoint+"/minio/health/ready", nil)
		res, err := hc.Do(req)
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("answered %d", res.StatusCode)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s3c := e.IssuerS3Client(credentials.NewStaticCredentialsProvider(pub.RootUser, pub.RootPassword, ""))
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(IssuerBucket)}); err != nil {
		return fmt.Errorf("create bucket %s: %w", IssuerBucket, err)
	}
	// Anyone may read the two documents; nothing else is public.
	policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Sid":"PublicIssuerDocuments","Effect":"Allow","Principal":{"AWS":["*"]},"Action":["s3:GetObject"],"Resource":["arn:aws:s3:::%[1]s/.well-known/openid-configuration","arn:aws:s3:::%[1]s/openid/v1/jwks"]}]}`, IssuerBucket)
	if _, err := s3c.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(IssuerBucket), Policy: aws.String(policy)}); err != nil {
		return fmt.Errorf("bucket policy: %w", err)
	}
	return nil
}

// PublicHTTPClient trusts the environment's CA (and nothing else): what an
// STS or IAM that trusts the bucket host's certificate uses.
func (e *Env) PublicHTTPClient() (*http.Client, error) {
	tr, err := tlsTransport(e.CACertPEM)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}, nil
}

// IssuerS3Client is an S3 client for the issuer bucket's host.
func (e *Env) IssuerS3Client(creds aws.CredentialsProvider) *s3.Client {
	hc, _ := e.PublicHTTPClient()
	return s3.New(s3.Options{
		Region: Region, BaseEndpoint: aws.String(e.Public.Endpoint), Credentials: creds,
		UsePathStyle: true, HTTPClient: hc,
	})
}

// StartPublicSTS starts (or restarts, with an empty key cache) a second
// MinIO acting as STS and S3, configured with the public discovery URL, as
// AWS is once the IAM OIDC provider exists. MinIO fetches discovery at start
// and keys when a token's kid is unknown, and never forgets a key; a
// restart stands for IAM's key cache expiring. It waits until a fresh
// token is exchanged, so call it after publishing.
func (e *Env) StartPublicSTS(ctx context.Context) error {
	if e.Public == nil {
		return fmt.Errorf("StartPublicSTS needs Options.PublicIssuer")
	}
	if e.sts != nil {
		_ = e.sts.Stop(10 * time.Second)
		e.sts = nil
	}
	// startMinIO configures OpenID from IssuerURL, which is the public URL
	// here, and trusts the environment's CA for it.
	if err := e.startMinIO(ctx, e.minioBin); err != nil {
		return err
	}
	e.sts = e.procs[len(e.procs)-1]
	return nil
}

// STSAcceptsToken reports what the STS says of token (nil: exchanged).
func (e *Env) STSAcceptsToken(ctx context.Context, token string) error {
	_, err := e.STSClient().AssumeRoleWithWebIdentity(ctx, &sts.AssumeRoleWithWebIdentityInput{
		RoleArn: aws.String(e.RoleARN), RoleSessionName: aws.String("testenv"),
		WebIdentityToken: aws.String(token), DurationSeconds: aws.Int32(900),
	})
	return err
}

// DropOldKeys restarts kube-apiserver accepting only its current signing
// key, as the last step of a rotation.
func (e *Env) DropOldKeys(ctx context.Context) error {
	var args []string
	for _, a := range e.apiserverArgs {
		if strings.HasPrefix(a, "--service-account-key-file=") {
			continue
		}
		args = append(args, a)
	}
	e.keyPubs = e.keyPubs[:1]
	e.apiserverArgs = append(args, "--service-account-key-file="+e.keyPubs[0])
	e.StopAPIServer()
	return e.StartAPIServer(ctx)
}

// RotateSigningKey restarts kube-apiserver signing with a fresh key. With
// keepOld it still accepts (and serves in its JWKS) every key it had;
// without, only the new one. It returns the new key.
func (e *Env) RotateSigningKey(ctx context.Context, keepOld bool) (*rsa.PrivateKey, error) {
	n := len(e.keyPubs) + 1
	pki := filepath.Join(e.Dir, "pki")
	keyPath, pubPath := filepath.Join(pki, fmt.Sprintf("sa-%d.key", n)), filepath.Join(pki, fmt.Sprintf("sa-%d.pub", n))
	key, err := signingKey(keyPath, pubPath)
	if err != nil {
		return nil, err
	}
	pubs := []string{pubPath}
	if keepOld {
		pubs = append(pubs, e.keyPubs...)
	}
	var args []string
	for _, a := range e.apiserverArgs {
		if strings.HasPrefix(a, "--service-account-key-file=") || strings.HasPrefix(a, "--service-account-signing-key-file=") {
			continue
		}
		args = append(args, a)
	}
	args = append(args, "--service-account-signing-key-file="+keyPath)
	for _, p := range pubs {
		args = append(args, "--service-account-key-file="+p)
	}
	e.StopAPIServer()
	e.apiserverArgs, e.keyPubs, e.SigningKey = args, pubs, key
	if err := e.StartAPIServer(ctx); err != nil {
		return nil, err
	}
	e.opts.Logf("kube-apiserver restarted with a new signing key (old keys kept: %v)", keepOld)
	return key, nil
}

// RestartAPIServerWithIssuerFlags restarts kube-apiserver with its
// --service-account-issuer and --service-account-jwks-uri replaced by flags
// (each "--name=value"), as an operator following docs/any-cluster.md sets
// them, and returns a function that restarts it with the flags it had.
func (e *Env) RestartAPIServerWithIssuerFlags(ctx context.Context, flags []string) (restore func(context.Context) error, err error) {
	old := e.apiserverArgs
	var args []string
	for _, a := range old {
		if strings.HasPrefix(a, "--service-account-issuer=") || strings.HasPrefix(a, "--service-account-jwks-uri=") {
			continue
		}
		args = append(args, a)
	}
	e.apiserverArgs = append(args, flags...)
	e.StopAPIServer()
	restore = func(ctx context.Context) error {
		e.apiserverArgs = old
		e.StopAPIServer()
		return e.StartAPIServer(ctx)
	}
	return restore, e.StartAPIServer(ctx)
}
