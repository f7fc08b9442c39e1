// Command demo is `make demo`: it shows podcreds doing its job end to end on
// this machine, with nothing faked on the AWS or Kubernetes side.
//
// It starts a real kube-apiserver (with etcd) and MinIO as STS and S3
// (internal/testkit/testenv), registers a pod whose ServiceAccount names a role, gives
// the agent a least-privilege identity, starts the agent binary, and runs an
// unmodified aws-sdk-go-v2 program (examples/s3client) as that pod: a process
// whose connections come from the pod's IP. The program finds the agent
// through AWS_CONTAINER_CREDENTIALS_FULL_URI alone, gets credentials, and
// writes and reads an object in S3. Then the agent's metrics are shown and
// everything is stopped — also on failure and on Ctrl-C.
//
//	go run ./hack/demo --agent=bin/podcreds --client=bin/s3client
//
// It builds nothing: the Makefile builds both binaries first.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/podcreds/podcreds/internal/testkit/testenv"
)

// The demo's cast.
const (
	appNamespace = "demo"
	appSA        = "app"
	appPod       = "app-1"
	nodeName     = "demo-node"
	bucket       = "demo"
)

// podIP is the demo pod's address: the client binds to it, and the agent
// finds the pod by it.
var podIP = netip.MustParseAddr("127.0.100.10")

// options is what the demo is told on its command line.
type options struct {
	agentBin  string
	clientBin string
	timeout   time.Duration
	// anyCluster publishes the cluster's issuer first (anycluster.go).
	anyCluster bool
}

func main() {
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(2)
	}

	interrupted, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal starts an orderly teardown; restoring the default
	// handling lets a second one end the demo at once (the children die with
	// it: they are started with Pdeathsig).
	context.AfterFunc(interrupted, stop)
	ctx, cancel := context.WithTimeout(interrupted, opts.timeout)

	u := newUI(os.Stdout)
	err = run(ctx, u, opts)
	timedOut := ctx.Err() == context.DeadlineExceeded
	cancel()
	switch {
	case err == nil:
		u.printf("\ndemo OK: pod %s/%s got credentials for its ServiceAccount from podcreds and used them on S3\n", appNamespace, appPod)
	case interrupted.Err() != nil:
		// The error is only the echo of the cancellation; its first line
		// says where the demo was.
		first, _, _ := strings.Cut(err.Error(), "\n")
		u.printf("\ndemo INTERRUPTED; everything it started has been stopped (was at: %s)\n", first)
		os.Exit(130)
	case timedOut:
		u.printf("\ndemo FAILED: not done within --timeout=%s: %v\n", opts.timeout, err)
		os.Exit(1)
	default:
		u.printf("\ndemo FAILED: %v\n", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.StringVar(&o.agentBin, "agent", "", "the podcreds binary (`make build` writes bin/podcreds)")
	fs.StringVar(&o.clientBin, "client", "", "the example S3 client binary (built from ./examples/s3client)")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up after this long")
	fs.BoolVar(&o.anyCluster, "any-cluster", false, "run as a self-managed cluster: publish the issuer to an https bucket with podcreds issuer publish --once, check it with podcreds doctor")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, b := range []struct{ flag, path, hint string }{
		{"--agent", o.agentBin, "make build"},
		{"--client", o.clientBin, "go build -o bin/s3client ./examples/s3client"},
	} {
		if b.path == "" {
			return o, fmt.Errorf("%s is required", b.flag)
		}
		st, err := os.Stat(b.path)
		if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return o, fmt.Errorf("%s=%s is not an executable file (build it with `%s`)", b.flag, b.path, b.hint)
		}
	}
	return o, nil
}

// run plays the demo. Everything it starts is stopped by its deferred
// teardown steps, whichever way it returns; a teardown that fails is added
// to the error.
func run(ctx context.Context, u *ui, opts options) (err error) {
	dir, err := os.MkdirTemp("", "podcreds-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	u.step("starting the cluster side: etcd, kube-apiserver and MinIO (STS + S3)")
	env, err := testenv.Start(ctx, testenv.Options{PublicIssuer: opts.anyCluster, Logf: func(format string, args ...any) {
		u.line("testenv | ", fmt.Sprintf(format, args...))
	}})
	if err != nil {
		return fmt.Errorf("start etcd, kube-apiserver and MinIO: %w", err)
	}
	defer func() {
		u.step("stopping MinIO, kube-apiserver and etcd")
		env.Stop()
	}()
	if opts.anyCluster {
		if err := publishIssuer(ctx, u, env, opts, dir); err != nil {
			return err
		}
	}

	u.step("creating ServiceAccount %s/%s with %s: %s", appNamespace, appSA, testenv.RoleAnnotation, env.RoleARN)
	if _, err := env.CreateServiceAccount(ctx, appNamespace, appSA, map[string]string{testenv.RoleAnnotation: env.RoleARN}); err != nil {
		return err
	}

	u.step("running pod %s/%s (ServiceAccount %s) on node %s with IP %s", appNamespace, appPod, appSA, nodeName, podIP)
	if _, err := env.RunPod(ctx, testenv.PodSpec{Namespace: appNamespace, Name: appPod, ServiceAccount: appSA, Node: nodeName, IP: podIP}); err != nil {
		return err
	}

	if opts.anyCluster {
		if err := runDoctor(ctx, u, env, opts, dir); err != nil {
			return err
		}
	}

	u.step("giving the agent a least-privilege identity: ServiceAccount %s/%s bound to ClusterRole %s", agentNamespace, agentSA, agentRole)
	kubeconfig := filepath.Join(dir, "agent.kubeconfig")
	if err := writeAgentKubeconfig(ctx, u, env, kubeconfig); err != nil {
		return err
	}

	ports, err := freePorts(3)
	if err != nil {
		return fmt.Errorf("find free ports: %w", err)
	}
	listen, health, metrics := loopback(ports[0]), loopback(ports[1]), loopback(ports[2])
	args := []string{
		"agent",
		"--node-name=" + nodeName,
		"--kubeconfig=" + kubeconfig,
		"--listen=" + listen,
		// The ECS address (169.254.170.2:80) is not on this machine.
		"--ecs-listen=none",
		"--health-listen=" + health,
		"--metrics-listen=" + metrics,
		"--sts-endpoint=" + env.STSEndpoint,
		"--sts-region=" + testenv.Region,
		"--log-format=console",
	}
	u.step("starting the agent: %s %s", opts.agentBin, strings.Join(args, " "))
	agent, err := startProcess(opts.agentBin, args, dir, nil, u.writer("agent | "))
	if err != nil {
		return err
	}
	defer func() {
		if exited, status := agent.Exited(); exited {
			u.step("the agent had already exited (%v)", status)
			return // its exit is already the reason run failed
		}
		u.step("stopping the agent (SIGTERM)")
		if stopErr := agent.Stop(15 * time.Second); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("the agent did not shut down cleanly: %w", stopErr))
			return
		}
		u.line("      ", "the agent exited cleanly")
	}()

	readyz := "http://" + health + "/readyz"
	u.step("waiting for the agent to be ready (%s)", readyz)
	if err := waitReady(ctx, agent, readyz, 30*time.Second); err != nil {
		return err
	}

	endpoint := "http://" + listen + "/v1/credentials"
	clientArgs := []string{"--source-ip=" + podIP.String(), "--s3-endpoint=" + env.S3Endpoint, "--bucket=" + bucket}
	u.step("running the pod's application as %s: AWS_CONTAINER_CREDENTIALS_FULL_URI=%s %s %s", podIP, endpoint, opts.clientBin, strings.Join(clientArgs, " "))
	if err := runClient(ctx, opts.clientBin, clientArgs, endpoint, dir, u.writer("pod  | ")); err != nil {
		return err
	}

	u.step("the agent's metrics (http://%s/metrics)", metrics)
	return showMetrics(ctx, u, "http://"+metrics+"/metrics", "podcreds_sts_requests_total", "podcreds_cache_requests_total")
}
