// Command floor is the memory floor of any node agent built on podcreds'
// dependency set: it links what an agent of client-go, aws-sdk-go-v2 (STS),
// prometheus/client_golang, zap and x/sync must reference, initialises it —
// logger, kubeconfig and TLS client, STS client, metrics registry — serves
// /metrics and does nothing else. bench/scale's memory scenario runs it
// beside the agent, so the agent's own share of its memory reads off the
// difference.
//
// Two build tags each leave one library out, to measure what it costs:
// floor_noprom serves /metrics from runtime.MemStats by hand instead of
// through client_golang, and floor_nosts links no STS client.
//
//	floor --kubeconfig=FILE --metrics-listen=ADDR
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"
)

// linked holds what an agent calls, so the linker keeps it as it would; the
// optional libraries' files add theirs.
var linked = []any{
	toolscache.NewSharedIndexInformer, rest.RESTClientFor,
	(*singleflight.Group).DoChan, workqueue.NewTyped[string], http.Serve,
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the API server")
	listen := flag.String("metrics-listen", "127.0.0.1:0", "address for /metrics")
	flag.Parse()
	if err := run(*kubeconfig, *listen); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

func run(kubeconfig, listen string) error {
	logger, err := zap.NewProduction()
	if err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	if _, err := rest.HTTPClientFor(cfg); err != nil {
		return err
	}
	initSTS()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	go func() { _ = http.Serve(ln, metricsHandler()) }()
	logger.Info("idle", zap.Int("linked", len(linked)), zap.String("metrics", ln.Addr().String()))
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	return nil
}
