// Package democlient is the "application" of the demo: an unmodified
// aws-sdk-go-v2 program that gets its credentials the way any pod on a
// podcreds node does — through the SDK's default credential chain, from the
// container-credentials endpoint named by AWS_CONTAINER_CREDENTIALS_FULL_URI —
// and proves they work by writing an object to S3 and reading it back.
//
// The one thing it adds to the SDK's defaults is the source address of its
// connections. On a real node every pod has its own IP and podcreds tells pods
// apart by it; in tests and the demo a "pod" is a process on the host, so it
// binds its sockets to its own 127.x address (Linux routes all of 127.0.0.0/8
// to the loopback interface).
//
// Run prints what it does as numbered lines. It never prints a secret: of the
// credentials only a prefix of the access key id, their expiry and the
// identity they belong to appear.
package democlient

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// DefaultRegion is the region used when Options.Region is empty.
const DefaultRegion = "us-east-1"

// DefaultKey is the object key used when Options.Key is empty.
const DefaultKey = "podcreds-demo.txt"

// The environment variables through which the SDK finds the
// container-credentials endpoint.
const (
	envFullURI     = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
	envRelativeURI = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"
	// ecsAddress is what the SDK prefixes a relative URI with.
	ecsAddress = "http://169.254.170.2"
)

// Options says where the client connects from and what it writes.
type Options struct {
	// SourceIP is the address every connection (to the credentials endpoint
	// and to S3) is made from: the pod's IP. The zero Addr lets the kernel
	// choose, as an ordinary process would.
	SourceIP netip.Addr
	// S3Endpoint is the S3 URL (e.g. MinIO's http://127.0.0.1:9000), used
	// path-style. Empty means AWS's regional endpoint.
	S3Endpoint string
	// Bucket is created if it does not exist. Required.
	Bucket string
	// Key is the object written and read back; DefaultKey if empty.
	Key string
	// Region signs the requests; DefaultRegion if empty.
	Region string
	// Out receives the numbered progress lines; nil discards them.
	Out io.Writer
}

// Run loads the SDK's default configuration, retrieves credentials through
// its default chain, tells who they belong to, then creates the bucket if
// missing, puts an object and gets it back. Any failure ends the run with an
// error naming the step.
func Run(ctx context.Context, opts Options) error {
	if opts.Bucket == "" {
		return errors.New("no bucket given")
	}
	if opts.Key == "" {
		opts.Key = DefaultKey
	}
	if opts.Region == "" {
		opts.Region = DefaultRegion
	}
	p := &printer{w: opts.Out}
	if p.w == nil {
		p.w = io.Discard
	}

	endpoint := os.Getenv(envFullURI)
	if rel := os.Getenv(envRelativeURI); endpoint == "" && rel != "" {
		endpoint = ecsAddress + rel
	}
	if endpoint == "" {
		// Without either variable the default chain would fall through to
		// IMDS and fail slowly; say what is missing instead.
		return fmt.Errorf("%s is not set: the default credential chain has no container-credentials endpoint to ask", envFullURI)
	}

	httpClient := newHTTPClient(opts.SourceIP)

	cfg, err := config.LoadDefaultConfig(ctx,
		config.WithRegion(opts.Region),
		config.WithHTTPClient(httpClient),
		config.WithEndpointCredentialOptions(func(o *endpointcreds.Options) { o.HTTPClient = httpClient }),
	)
	if err != nil {
		return fmt.Errorf("load the SDK's default config: %w", err)
	}
	if cfg.Credentials == nil {
		return errors.New("the SDK's default config found no credential provider")
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return fmt.Errorf("retrieve credentials from %s through the default chain: %w", endpoint, err)
	}
	if creds.Source != endpointcreds.ProviderName {
		// Static keys in the environment or a profile win over the container
		// endpoint in the default chain; the demo would then prove nothing.
		return fmt.Errorf("the default chain took credentials from %q, not the container-credentials endpoint: unset AWS_ACCESS_KEY_ID, AWS_PROFILE and the like", creds.Source)
	}
	from := "the kernel's choice of address"
	if opts.SourceIP.IsValid() {
		from = opts.SourceIP.String()
	}
	p.step("credentials from %s (asked from %s): access key %s, %s", endpoint, from, keyPrefix(creds.AccessKeyID), expiry(creds))

	who, err := Whoami(creds.SessionToken)
	if err != nil {
		p.step("identity: cannot tell (%v)", err)
		who = "an unknown identity"
	} else {
		p.step("identity: %s", who)
	}

	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.UsePathStyle = true
		if opts.S3Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.S3Endpoint)
		}
	})
	created, err := ensureBucket(ctx, client, opts.Bucket, opts.Region)
	if err != nil {
		return err
	}
	if created {
		p.step("bucket %s: created", opts.Bucket)
	} else {
		p.step("bucket %s: already exists", opts.Bucket)
	}

	body := []byte(fmt.Sprintf("hello from %s through podcreds at %s (nonce %s)\n", who, time.Now().UTC().Format(time.RFC3339), nonce()))
	url := fmt.Sprintf("s3://%s/%s", opts.Bucket, opts.Key)
	if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: &opts.Bucket, Key: &opts.Key, Body: bytes.NewReader(body)}); err != nil {
		return fmt.Errorf("put %s: %w", url, err)
	}
	p.step("put %s (%d bytes)", url, len(body))

	got, err := getObject(ctx, client, opts.Bucket, opts.Key)
	if err != nil {
		return fmt.Errorf("get %s: %w", url, err)
	}
	if !bytes.Equal(got, body) {
		return fmt.Errorf("get %s returned %d bytes that differ from the %d put", url, len(got), len(body))
	}
	p.step("get %s: %d bytes, identical to what was put", url, len(got))
	return nil
}

// newHTTPClient returns the client both the credentials provider and S3 use:
// the SDK's own default client, dialing from ip when it is valid. It stays a
// BuildableClient so the SDK can still apply its settings to S3's copy
// (AWS_CA_BUNDLE, defaults mode, read timeouts); the credentials provider
// gets it as is, as the SDK would give it its own default client.
func newHTTPClient(ip netip.Addr) *awshttp.BuildableClient {
	c := awshttp.NewBuildableClient()
	if !ip.IsValid() {
		return c
	}
	return c.WithDialerOptions(func(d *net.Dialer) {
		d.LocalAddr = &net.TCPAddr{IP: ip.AsSlice(), Zone: ip.Zone()}
	})
}

// ensureBucket creates bucket unless it exists, and reports whether it did.
func ensureBucket(ctx context.Context, client *s3.Client, bucket, region string) (bool, error) {
	_, err := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &bucket})
	if err == nil {
		return false, nil
	}
	var resp *awshttp.ResponseError
	if !errors.As(err, &resp) || resp.HTTPStatusCode() != http.StatusNotFound {
		return false, fmt.Errorf("look for bucket %s: %w", bucket, err)
	}
	in := &s3.CreateBucketInput{Bucket: &bucket}
	if region != DefaultRegion {
		// us-east-1 is the one region S3 refuses an explicit constraint for.
		in.CreateBucketConfiguration = &types.CreateBucketConfiguration{LocationConstraint: types.BucketLocationConstraint(region)}
	}
	_, err = client.CreateBucket(ctx, in)
	var owned *types.BucketAlreadyOwnedByYou
	switch {
	case errors.As(err, &owned):
		return false, nil // another run created it between our two calls
	case err != nil:
		return false, fmt.Errorf("create bucket %s: %w", bucket, err)
	}
	return true, nil
}

func getObject(ctx context.Context, client *s3.Client, bucket, key string) ([]byte, error) {
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

// keyPrefix shows enough of an access key id to recognise it in a log, and
// never more than half of it.
func keyPrefix(id string) string {
	return id[:min(4, len(id)/2)] + "…"
}

func expiry(c aws.Credentials) string {
	if !c.CanExpire {
		return "no expiry (the endpoint sent no Expiration, so the SDK will never refresh them)"
	}
	return fmt.Sprintf("expire %s (in %s)", c.Expires.UTC().Format(time.RFC3339), time.Until(c.Expires).Round(time.Second))
}

func nonce() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b) // crypto/rand does not fail on Linux
	return hex.EncodeToString(b)
}

// printer numbers the progress lines.
type printer struct {
	w io.Writer
	n int
}

func (p *printer) step(format string, args ...any) {
	p.n++
	fmt.Fprintf(p.w, "%d. %s\n", p.n, fmt.Sprintf(format, args...))
}
