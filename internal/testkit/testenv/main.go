package testenv

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Runner is what TestMain receives (*testing.M); taking the interface keeps
// this package free of the testing package, so the demo can use it too.
type Runner interface{ Run() int }

// Main starts one environment for a whole test package, stores it in *env,
// runs the tests and stops it. If the environment cannot start, every test in
// the package fails loudly with the reason: it never skips.
//
//	var env *testenv.Env
//	func TestMain(m *testing.M) { testenv.Main(m, &env) }
//
// Each check runs after the tests, with the environment still up; one that
// fails turns the package's result into a failure.
func Main(m Runner, env **Env, checks ...func() error) {
	MainWith(m, env, Options{}, checks...)
}

// MainWith is Main with Options (KeepDir follows PODCREDS_KEEP_TESTENV).
func MainWith(m Runner, env **Env, opts Options, checks ...func() error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	start := time.Now()
	opts.KeepDir = opts.KeepDir || os.Getenv("PODCREDS_KEEP_TESTENV") != ""
	e, err := Start(ctx, opts)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: the test environment (etcd, kube-apiserver, minio) did not start: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "testenv: etcd, kube-apiserver and minio ready in %s\n", time.Since(start).Round(10*time.Millisecond))
	*env = e
	code := m.Run()
	for _, check := range checks {
		if err := check(); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
			code = 1
		}
	}
	e.Stop()
	os.Exit(code)
}

// S3Client returns an S3 client for MinIO using creds (path-style, as MinIO
// serves it).
func (e *Env) S3Client(creds aws.CredentialsProvider) *s3.Client {
	return s3.New(s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(e.S3Endpoint),
		Credentials:  creds,
		UsePathStyle: true,
	})
}
