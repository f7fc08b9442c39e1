//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/podcreds/podcreds/internal/testkit/testenv"
	"github.com/podcreds/podcreds/netsetup"
)

const (
	nodeName = "e2e-node"
	appsNS   = "e2e-apps"
	bucket   = "e2e"
	// imdsListen is where the agent serves IMDS; pods' 169.254.169.254:80
	// is redirected there.
	imdsListen = "169.254.170.23:8169"
)

// suite is everything the tests share; set by inner before m.Run.
var suite *state

type state struct {
	dir        string // scratch: logs, kubeconfig, pods' files
	bin        string // the binaries the outer run built
	env        *testenv.Env
	root       *s3.Client // MinIO's admin, to check what clients wrote
	kubeconfig string
	agent      *agentProcess
	agentRuns  int
	realIMDS   *http.Server
	// realIMDSFrom counts the stand-in IMDS's requests by source address.
	realIMDSMu   sync.Mutex
	realIMDSFrom map[netip.Addr]int
	// beforeInstall is the node's interfaces, addresses and nftables
	// ruleset before the agent first ran (nodeState).
	beforeInstall string
	podA, podB    *pod
	compat        *compatTable
}

// setUp brings up the node: network, control plane and MinIO, the agent's
// identity from deploy/, two pods with different ServiceAccounts, and the
// agent. On error the caller still calls tearDown on what it returns.
func setUp() (*state, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s := &state{bin: os.Getenv(envBin), compat: &compatTable{}}
	dir, err := os.MkdirTemp("", "run-")
	if err != nil {
		return s, err
	}
	s.dir = dir

	if err := setUpNodeNetwork(); err != nil {
		return s, err
	}
	if s.realIMDS, err = s.serveRealIMDS(); err != nil {
		return s, err
	}
	logf("node namespace ready (loopback, %s for pods, stand-in IMDS on %s)", nodeAddr, realIMDS)

	s.env, err = testenv.Start(ctx, testenv.Options{
		MinIOHost: nodeAddr.String(),
		Logf:      func(format string, args ...any) { logf("testenv: "+format, args...) },
	})
	if err != nil {
		return s, fmt.Errorf("start etcd, kube-apiserver and MinIO: %w", err)
	}
	s.root = s.env.S3Client(credentials.NewStaticCredentialsProvider(s.env.MinIORootUser, s.env.MinIORootPassword, ""))
	if _, err := s.root.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		return s, fmt.Errorf("create bucket %s: %w", bucket, err)
	}

	s.kubeconfig = filepath.Join(dir, "agent.kubeconfig")
	if err := agentIdentity(ctx, s.env, s.kubeconfig); err != nil {
		return s, fmt.Errorf("the agent's identity from deploy/: %w", err)
	}
	for _, sa := range []string{"alpha", "beta"} {
		if _, err := s.env.CreateServiceAccount(ctx, appsNS, sa, map[string]string{testenv.RoleAnnotation: s.env.RoleARN}); err != nil {
			return s, err
		}
	}
	if s.podA, err = newPod(ctx, s.env, dir, "a", appsNS, "alpha", netip.MustParseAddr("198.18.0.10")); err != nil {
		return s, fmt.Errorf("pod a: %w", err)
	}
	if s.podB, err = newPod(ctx, s.env, dir, "b", appsNS, "beta", netip.MustParseAddr("198.18.0.11")); err != nil {
		return s, fmt.Errorf("pod b: %w", err)
	}
	logf("pods %s (%s, %s) and %s (%s, %s) running", s.podA.name, s.podA.serviceAccount, s.podA.ip, s.podB.name, s.podB.serviceAccount, s.podB.ip)

	if s.beforeInstall, err = nodeState(); err != nil {
		return s, err
	}
	if err := s.startAgent(ctx); err != nil {
		return s, err
	}
	return s, nil
}

// podRequestsToRealIMDS is how many requests from the pods' addresses the
// node's IMDS stand-in has answered.
func (s *state) podRequestsToRealIMDS() int {
	s.realIMDSMu.Lock()
	defer s.realIMDSMu.Unlock()
	n := 0
	for _, p := range []*pod{s.podA, s.podB} {
		n += s.realIMDSFrom[p.ip]
		if p.ip6.IsValid() {
			n += s.realIMDSFrom[p.ip6]
		}
	}
	return n
}

// nodeState is what an uninstall must restore, read with iproute2 and nft:
// the node's interfaces with their addresses, and the nftables ruleset.
func nodeState() (string, error) {
	links, err := output("ip", "-br", "addr", "show")
	if err != nil {
		return "", err
	}
	rules, err := output("nft", "list", "ruleset")
	if err != nil {
		return "", err
	}
	return links + rules, nil
}

// tearDown stops everything setUp started; safe on a partial setup. The
// outer run deletes the node namespace afterwards.
func (s *state) tearDown() {
	if s == nil {
		return
	}
	if s.agent != nil {
		_ = s.agent.stop(15 * time.Second)
	}
	s.podA.remove()
	s.podB.remove()
	s.env.Stop()
	if s.realIMDS != nil {
		_ = s.realIMDS.Close()
	}
	// s.dir is under the outer run's scratch directory, which the outer
	// run removes (or keeps, with PODCREDS_KEEP_E2E=1).
}

// agentArgs is the agent as the DaemonSet runs it, plus this node's
// kubeconfig and STS, and IMDS switched on.
func (s *state) agentArgs() []string {
	return []string{
		"agent",
		"--node-name=" + nodeName,
		"--kubeconfig=" + s.kubeconfig,
		"--sts-endpoint=" + s.env.STSEndpoint,
		"--link-setup",
		"--imds-listen=" + imdsListen,
		"--imds-key-file=" + filepath.Join(s.dir, "node", "imds-token.key"),
		"--log-format=console",
	}
}

// startAgent starts the agent binary and waits until it is ready.
func (s *state) startAgent(ctx context.Context) error {
	a, err := s.launchAgent(ctx, 8090)
	if a != nil {
		s.agent = a
	}
	return err
}

// launchAgent starts another agent, its health and metrics on healthPort
// and the port after it (the listeners are in reuseport groups, so a
// second agent could share them, but the suite asks each agent about its
// own readiness), and waits until it is ready: warm, and in the group.
func (s *state) launchAgent(ctx context.Context, healthPort int) (*agentProcess, error) {
	s.agentRuns++
	log := filepath.Join(s.dir, fmt.Sprintf("agent-%d.log", s.agentRuns))
	health := fmt.Sprintf("127.0.0.1:%d", healthPort)
	args := append(s.agentArgs(), "--health-listen="+health, fmt.Sprintf("--metrics-listen=127.0.0.1:%d", healthPort+1),
		"--health-socket="+s.healthSocket(healthPort))
	a, err := startAgent(filepath.Join(s.bin, "podcreds"), args, log)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := a.waitReady(ctx, "http://"+health+"/readyz", 60*time.Second); err != nil {
		return a, err
	}
	logf("agent #%d ready in %s", s.agentRuns, time.Since(start).Round(10*time.Millisecond))
	return a, nil
}

// healthSocket is where the agent launched with healthPort serves its
// health checks for podcreds probe (each agent's own, as each DaemonSet
// pod's emptyDir is).
func (s *state) healthSocket(healthPort int) string {
	return filepath.Join(s.dir, fmt.Sprintf("health-%d.sock", healthPort))
}

// agentIdentity creates the agent's Namespace, ServiceAccount, ClusterRole
// and binding from the manifests in deploy/ and writes a kubeconfig with a
// token of that ServiceAccount: the agent runs with exactly the permissions
// the DaemonSet gives it.
func agentIdentity(ctx context.Context, env *testenv.Env, kubeconfig string) error {
	return identityFrom(ctx, env, filepath.Join("..", "..", "deploy"), []string{"namespace.yaml", "serviceaccount.yaml", "rbac.yaml"}, kubeconfig)
}

// identityFrom creates the Namespaces, ServiceAccount and RBAC objects in
// dir's files (already existing ones are kept) and writes a kubeconfig with
// an hour's token of that ServiceAccount, so a component under test runs
// with exactly the permissions its manifests give it.
func identityFrom(ctx context.Context, env *testenv.Env, dir string, files []string, kubeconfig string) error {
	var sa *corev1.ServiceAccount
	for _, file := range files {
		raw, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			return err
		}
		for _, doc := range bytes.Split(raw, []byte("\n---")) {
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			switch o := obj.(type) {
			case *corev1.Namespace:
				_, err = env.Client.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{})
			case *corev1.ServiceAccount:
				sa, err = env.Client.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			case *rbacv1.ClusterRole:
				_, err = env.Client.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
			case *rbacv1.ClusterRoleBinding:
				_, err = env.Client.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
			default:
				err = fmt.Errorf("unexpected %T", obj)
			}
			if err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("%s: %w", file, err)
			}
		}
	}
	if sa == nil {
		return fmt.Errorf("%s: no ServiceAccount in %v", dir, files)
	}
	expiry := int64(3600)
	tr, err := env.Client.CoreV1().ServiceAccounts(sa.Namespace).CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("token for %s/%s: %w", sa.Namespace, sa.Name, err)
	}
	return env.WriteKubeconfig(kubeconfig, tr.Status.Token)
}

// serveRealIMDS answers on 169.254.169.254:80 in the node namespace as the
// node's real instance metadata service would, with a body that names it,
// and counts its callers by address.
func (s *state) serveRealIMDS() (*http.Server, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(realIMDS.String(), "80"))
	if err != nil {
		return nil, err
	}
	var l6 net.Listener
	if netsetup.IPv6Enabled() {
		if l6, err = net.Listen("tcp", net.JoinHostPort(realIMDSv6.String(), "80")); err != nil {
			l.Close()
			return nil, err
		}
	}
	s.realIMDSFrom = map[netip.Addr]int{}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
				s.realIMDSMu.Lock()
				s.realIMDSFrom[ap.Addr().Unmap()]++
				s.realIMDSMu.Unlock()
			}
			_, _ = w.Write([]byte(realIMDSBody))
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() { _ = srv.Serve(l) }()
	if l6 != nil {
		go func() { _ = srv.Serve(l6) }()
	}
	return srv, nil
}

const realIMDSBody = "the node's real IMDS\n"

// get fetches url from the node namespace (this process) with a short timeout.
func get(url string) (int, string, error) {
	client := &http.Client{Timeout: 3 * time.Second}
	res, err := client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return res.StatusCode, string(body), err
}
