package main

import (
	"strings"
	"testing"
	"time"
)

func TestIssuerConfig(t *testing.T) {
	noEnv := func(string) string { return "" }
	const url = "--public-url=https://s3.us-east-1.amazonaws.com/cluster-oidc"
	t.Run("defaults and the environment", func(t *testing.T) {
		env := map[string]string{"POD_NAME": "issuer-0", "POD_NAMESPACE": "ops", "AWS_REGION": "eu-west-1"}
		c, err := parseIssuerConfig([]string{url, "--bucket=cluster-oidc"}, false, func(k string) string { return env[k] })
		if err != nil {
			t.Fatal(err)
		}
		if c.Identity != "issuer-0" || c.LeaseNamespace != "ops" || c.S3Region != "eu-west-1" || c.Overlap != 25*time.Hour || c.Interval != time.Minute {
			t.Fatalf("config %+v", c)
		}
	})
	for _, tc := range []struct {
		name    string
		publish bool
		args    []string
		want    string
	}{
		{"the public URL is required", false, []string{"--dir=/srv"}, "-public-url is required"},
		{"the public URL must be https", false, []string{"--public-url=http://x/y", "--dir=/srv"}, "not https"},
		{"a target is required", true, []string{url}, "give -bucket"},
		{"one target only", true, []string{url, "--dir=/srv", "--bucket=b", "--s3-region=r"}, "exclusive"},
		{"a bucket needs a region", true, []string{url, "--bucket=b"}, "-s3-region"},
		{"lease timings must nest", false, []string{url, "--dir=/srv", "--identity=a", "--lease-duration=2s", "--renew-deadline=3s"}, "-lease-duration > -renew-deadline"},
		{"the overlap must be positive", true, []string{url, "--dir=/srv", "--overlap=0s"}, "-overlap must be positive"},
		{"publish takes no lease flags", true, []string{url, "--dir=/srv", "--lease-name=x"}, "flag provided but not defined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseIssuerConfig(tc.args, tc.publish, noEnv)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}
