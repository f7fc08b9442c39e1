// Command s3client is an unmodified-SDK application for trying podcreds: it
// takes credentials from the aws-sdk-go-v2 default chain (set
// AWS_CONTAINER_CREDENTIALS_FULL_URI, and AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE
// if your endpoint wants a token), says whose they are, and writes an object
// to S3 and reads it back.
//
//	AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:8090/v1/credentials \
//	  s3client --source-ip=127.0.100.10 --s3-endpoint=http://127.0.0.1:9000 --bucket=demo
//
// --source-ip makes every connection come from the given address, so a
// process on the host can stand in for a pod with that IP.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/podcreds/podcreds/internal/testkit/democlient"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "s3client: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		opts     democlient.Options
		sourceIP string
		timeout  time.Duration
	)
	flag.StringVar(&sourceIP, "source-ip", "", "address to connect from (the pod's IP); empty lets the kernel choose")
	flag.StringVar(&opts.S3Endpoint, "s3-endpoint", "", "S3 endpoint URL, used path-style (empty: AWS's regional endpoint)")
	flag.StringVar(&opts.Bucket, "bucket", "", "bucket to write to, created if missing (required)")
	flag.StringVar(&opts.Key, "key", democlient.DefaultKey, "object key to write and read back")
	flag.StringVar(&opts.Region, "region", democlient.DefaultRegion, "AWS region")
	flag.DurationVar(&timeout, "timeout", time.Minute, "give up after this long")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if opts.Bucket == "" {
		return fmt.Errorf("--bucket is required")
	}
	if sourceIP != "" {
		ip, err := netip.ParseAddr(sourceIP)
		if err != nil {
			return fmt.Errorf("--source-ip: %w", err)
		}
		opts.SourceIP = ip
	}
	opts.Out = os.Stdout

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return democlient.Run(ctx, opts)
}
