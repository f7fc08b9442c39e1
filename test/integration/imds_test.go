package integration

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/podcreds/podcreds/internal/testkit/testenv"
)

// TestIMDSWithTheGoSDK: aws-sdk-go-v2's own IMDS client and EC2 role
// provider, pointed at the agent by AWS_EC2_METADATA_SERVICE_ENDPOINT and
// dialing from a pod's address, find the region and working credentials.
func TestIMDSWithTheGoSDK(t *testing.T) {
	ctx := ctxT(t)
	ns := uniqueName(t)
	h := startAgent(t, harnessOptions{node: "node-" + ns, imds: true})
	if _, err := env.CreateServiceAccount(ctx, ns, "app", map[string]string{testenv.RoleAnnotation: env.RoleARN}); err != nil {
		t.Fatal(err)
	}
	ip := addr(30, 0, 1)
	if _, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "app", ServiceAccount: "app", Node: h.node, IP: ip}); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_EC2_METADATA_DISABLED"} {
		t.Setenv(v, "")
	}
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://"+h.agent.IMDSAddrs()[0].String())

	podHTTP := awshttp.NewBuildableClient().WithDialerOptions(func(d *net.Dialer) {
		d.LocalAddr = &net.TCPAddr{IP: ip.AsSlice()}
	})
	// The default chain with nothing else configured ends at the EC2 role
	// provider; the region comes from IMDS too. (The SDK's region lookup
	// builds its own IMDS client, ignoring WithHTTPClient: give it one that
	// dials from the pod, or the agent rightly answers "not a pod".)
	cfg, err := config.LoadDefaultConfig(ctx, config.WithHTTPClient(podHTTP),
		config.WithEC2IMDSRegion(func(o *config.UseEC2IMDSRegion) { o.Client = imds.New(imds.Options{HTTPClient: podHTTP}) }))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Region != testenv.Region {
		t.Errorf("region from IMDS %q, want %q", cfg.Region, testenv.Region)
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		t.Fatalf("credentials through IMDS: %v", err)
	}
	if creds.Source != ec2rolecreds.ProviderName {
		t.Fatalf("credentials came from %q, want the EC2 role provider", creds.Source)
	}
	if got := subject(t, creds.SessionToken); got != "system:serviceaccount:"+ns+":app" {
		t.Errorf("credentials for %q", got)
	}

	client := imds.NewFromConfig(cfg)
	az, err := client.GetMetadata(ctx, &imds.GetMetadataInput{Path: "placement/availability-zone"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(az.Content)
	if string(b) != testenv.Region+"a" {
		t.Errorf("availability zone %q", b)
	}

	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.BaseEndpoint = aws.String(env.S3Endpoint); o.UsePathStyle = true })
	bucket, key := "imds-"+strings.ReplaceAll(ns, "-", ""), "hello"
	bucket = bucket[:min(len(bucket), 40)]
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatalf("CreateBucket with IMDS credentials: %v", err)
	}
	if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader([]byte("via imds"))}); err != nil {
		t.Fatal(err)
	}
	got, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	defer got.Body.Close()
	if body, _ := io.ReadAll(got.Body); string(body) != "via imds" {
		t.Fatalf("read back %q", body)
	}
}
