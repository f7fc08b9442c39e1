package integration

import (
	"bytes"
	"strings"
	"testing"

	"github.com/podcreds/podcreds/internal/testkit/democlient"
	"github.com/podcreds/podcreds/internal/testkit/testenv"
)

// TestDemoFlow is `make demo` as a test: an application on aws-sdk-go-v2's
// default configuration, with only AWS_CONTAINER_CREDENTIALS_FULL_URI set and
// dialing from its pod's address, gets credentials through the agent and
// uses them on MinIO's S3.
func TestDemoFlow(t *testing.T) {
	ctx := ctxT(t)
	ns := uniqueName(t)
	h := startAgent(t, harnessOptions{node: "node-" + ns})
	if _, err := env.CreateServiceAccount(ctx, ns, "app", map[string]string{testenv.RoleAnnotation: env.RoleARN}); err != nil {
		t.Fatal(err)
	}
	ip := addr(25, 0, 1)
	if _, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "app-1", ServiceAccount: "app", Node: h.node, IP: ip}); err != nil {
		t.Fatal(err)
	}
	// Nothing from the developer's or CI's environment may stand in for podcreds.
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_WEB_IDENTITY_TOKEN_FILE"} {
		t.Setenv(v, "")
	}
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", h.url)

	var out bytes.Buffer
	err := democlient.Run(ctx, democlient.Options{SourceIP: ip, S3Endpoint: env.S3Endpoint, Bucket: "demo-flow", Region: testenv.Region, Out: &out})
	if err != nil {
		t.Fatalf("demo client: %v\n%s", err, out.String())
	}
	if want := "system:serviceaccount:" + ns + ":app"; !strings.Contains(out.String(), want) {
		t.Errorf("client output does not name %s:\n%s", want, out.String())
	}
	if n := h.sts.calls.Load(); n != 1 {
		t.Errorf("%d STS calls for one pod, want 1", n)
	}
}
