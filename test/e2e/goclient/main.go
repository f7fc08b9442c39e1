// Command goclient is an unmodified aws-sdk-go-v2 application, as a pod
// would run it: config.LoadDefaultConfig and nothing else, so the SDK's own
// default chain decides where credentials come from (the container endpoint
// named by AWS_CONTAINER_CREDENTIALS_FULL_URI or _RELATIVE_URI, or instance
// metadata). The e2e suite runs it inside a pod's network namespace.
//
// It writes E2E_BODY to s3://E2E_BUCKET/E2E_KEY on E2E_S3_ENDPOINT, reads it
// back, and prints one JSON line: the SDK's version, the provider that
// answered, and the subject of the session token (MinIO's session tokens are
// JWTs naming the web identity: the pod's ServiceAccount).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/podcreds/podcreds/internal/testkit/democlient"
)

type result struct {
	Client   string `json:"client"`
	Version  string `json:"version"`
	Provider string `json:"provider,omitempty"`
	Sub      string `json:"sub,omitempty"`
	OK       bool   `json:"ok"`
	Error    string `json:"error,omitempty"`
}

func main() {
	res := result{Client: "aws-sdk-go-v2", Version: version()}
	if err := run(&res); err != nil {
		res.Error = err.Error()
	} else {
		res.OK = true
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
	if !res.OK {
		os.Exit(1)
	}
}

func run(res *result) error {
	bucket, key, body, endpoint := os.Getenv("E2E_BUCKET"), os.Getenv("E2E_KEY"), os.Getenv("E2E_BODY"), os.Getenv("E2E_S3_ENDPOINT")
	if bucket == "" || key == "" || body == "" || endpoint == "" {
		return fmt.Errorf("E2E_BUCKET, E2E_KEY, E2E_BODY and E2E_S3_ENDPOINT must be set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("load default config: %w", err)
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return fmt.Errorf("retrieve credentials: %w", err)
	}
	res.Provider = creds.Source
	res.Sub, _ = democlient.Whoami(creds.SessionToken)

	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.UsePathStyle = true
	})
	if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader([]byte(body))}); err != nil {
		return fmt.Errorf("put: %w", err)
	}
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return fmt.Errorf("get: %w", err)
	}
	defer out.Body.Close()
	got, err := io.ReadAll(out.Body)
	if err != nil {
		return fmt.Errorf("get: %w", err)
	}
	if string(got) != body {
		return fmt.Errorf("read back %d bytes that differ from the %d written", len(got), len(body))
	}
	return nil
}

// version reads the SDK modules' versions from the binary itself.
func version() string {
	v := map[string]string{}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, d := range info.Deps {
			v[d.Path] = d.Version
		}
	}
	const sdk = "github.com/aws/aws-sdk-go-v2"
	return fmt.Sprintf("aws-sdk-go-v2 %s (config %s, credentials %s, feature/ec2/imds %s), %s",
		v[sdk], v[sdk+"/config"], v[sdk+"/credentials"], v[sdk+"/feature/ec2/imds"], runtime.Version())
}
