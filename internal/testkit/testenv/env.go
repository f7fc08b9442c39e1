// Package testenv runs the real parts podcreds talks to in production — etcd,
// kube-apiserver signing bound ServiceAccount tokens, and MinIO as an STS that
// verifies them through the API server's OIDC discovery — on free loopback
// ports, for integration tests and the demo.
//
// It never skips: if a binary is missing or a process does not come up, Start
// returns an error carrying the process's last log lines and the make target
// that builds it.
package testenv

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Region is the AWS region MinIO runs as.
const Region = "us-east-1"

// Audience is the token audience MinIO accepts (its OpenID client id).
const Audience = "sts.amazonaws.com"

// Options tunes an environment.
type Options struct {
	// Logf, when set, receives one line per step (the demo prints them).
	Logf func(format string, args ...any)
	// KeepDir keeps the working directory (logs, data) after Stop.
	KeepDir bool
	// MinIOHost is the IP address MinIO listens on, and the host of
	// STSEndpoint and S3Endpoint; empty means 127.0.0.1. The e2e suite uses
	// an address that pods in their own network namespaces can reach.
	MinIOHost string
	// PublicIssuer runs the cluster as a self-managed one publishing its
	// issuer (see public.go): a MinIO serving a bucket over https is the
	// public issuer URL, kube-apiserver's --service-account-issuer and
	// --service-account-jwks-uri point into that bucket, and no STS runs
	// until the test calls StartPublicSTS (after publishing).
	PublicIssuer bool
}

// Env is a running control plane and STS.
type Env struct {
	// Config is an admin (system:masters) client configuration.
	Config *rest.Config
	// Client is a clientset built from Config.
	Client kubernetes.Interface
	// APIServerURL is the API server's https URL; it is also the issuer
	// unless Options.PublicIssuer is set.
	APIServerURL string
	// IssuerURL is the ServiceAccount token issuer: APIServerURL, or with
	// Options.PublicIssuer the public bucket URL.
	IssuerURL string
	// CACertPEM is the certificate that signs the API server's serving cert.
	CACertPEM []byte
	// SigningKey signs the API server's ServiceAccount tokens; tests use it
	// to tell real tokens from forged ones, never to mint tokens themselves.
	SigningKey *rsa.PrivateKey
	// STSEndpoint and S3Endpoint are MinIO's (the same http URL).
	STSEndpoint string
	S3Endpoint  string
	// RoleARN is the role MinIO lets web identities assume.
	RoleARN string
	// MinIORootUser and MinIORootPassword are MinIO's admin credentials.
	MinIORootUser     string
	MinIORootPassword string
	// Dir holds every process's data and log.
	Dir string

	opts          Options
	procs         []*process
	apiserver     *process
	apiserverBin  string
	apiserverArgs []string
	stopOnce      sync.Once
	startedAt     time.Time

	// Options.PublicIssuer only.
	Public          *PublicIssuer
	minioBin        string
	sts             *process
	stsStarts       int
	servingCertPath string
	servingKeyPath  string
	keyPubs         []string // --service-account-key-file values, signing key's first
}

// Start brings up etcd, kube-apiserver and MinIO. The caller must call Stop,
// also when Start fails part-way (Stop on a nil *Env is a no-op).
func Start(ctx context.Context, opts Options) (env *Env, err error) {
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	bins := map[string]string{}
	for _, name := range []string{"etcd", "kube-apiserver", "minio"} {
		if bins[name], err = findBinary(name); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "podcreds-testenv-")
	if err != nil {
		return nil, err
	}
	env = &Env{Dir: dir, opts: opts, startedAt: time.Now()}
	defer func() {
		if err != nil {
			env.Stop()
			env = nil
		}
	}()

	etcdURL, err := env.startEtcd(bins["etcd"])
	if err != nil {
		return env, err
	}
	env.minioBin = bins["minio"]
	if opts.PublicIssuer {
		if err := env.planPublicIssuer(); err != nil {
			return env, err
		}
	}
	if err := env.startAPIServer(ctx, bins["kube-apiserver"], etcdURL); err != nil {
		return env, err
	}
	if opts.PublicIssuer {
		if err := env.startIssuerBucket(ctx); err != nil {
			return env, err
		}
	} else if err := env.startMinIO(ctx, bins["minio"]); err != nil {
		return env, err
	}
	opts.Logf("environment ready in %s", time.Since(env.startedAt).Round(10*time.Millisecond))
	return env, nil
}

// Stop ends every process and removes the working directory. It is safe to
// call more than once and on a nil *Env.
func (e *Env) Stop() {
	if e == nil {
		return
	}
	e.stopOnce.Do(func() {
		// Reverse order: MinIO and the API server before etcd.
		for i := len(e.procs) - 1; i >= 0; i-- {
			_ = e.procs[i].Stop(10 * time.Second)
		}
		if !e.opts.KeepDir {
			_ = os.RemoveAll(e.Dir)
		}
	})
}

func (e *Env) startEtcd(bin string) (string, error) {
	clientPort, err := freePort()
	if err != nil {
		return "", err
	}
	peerPort, err := freePort()
	if err != nil {
		return "", err
	}
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	p, err := startProcess(e.Dir, "etcd", bin, []string{
		"--name=testenv",
		"--data-dir=" + filepath.Join(e.Dir, "etcd"),
		"--listen-client-urls=" + clientURL,
		"--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=testenv=" + peerURL,
		// A throwaway test store: durability buys nothing and fsync costs
		// seconds on a shared disk.
		"--unsafe-no-fsync",
		"--log-level=warn",
	}, nil)
	if err != nil {
		return "", err
	}
	e.procs = append(e.procs, p)
	e.opts.Logf("etcd starting on %s", clientURL)
	return clientURL, nil
}

// waitFor polls check until it succeeds, the process dies, or timeout passes.
// Polling is right here: these are other processes' readiness endpoints,
// with nothing to subscribe to.
func waitFor(ctx context.Context, p *process, timeout time.Duration, what string, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if done, _ := p.Exited(); done {
			return p.failure(fmt.Errorf("waiting for %s: %w", what, errStopped))
		}
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		last = check(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return p.failure(fmt.Errorf("%s not ready after %s: %w", what, timeout, errors.Join(ctx.Err(), last)))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}
