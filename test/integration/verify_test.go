package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podcreds/podcreds/agent"
	"github.com/podcreds/podcreds/internal/testkit/testenv"
	"github.com/podcreds/podcreds/metrics"
)

// podToken is what the kubelet projects into a pod for the agent: a token
// with the agent's audience, bound to the pod.
func podToken(t *testing.T, ns, sa, podName, podUID string) string {
	t.Helper()
	return requestToken(ctxT(t), t, ns, sa, podTokenAudience, podName, podUID)
}

func TestPresentedTokens(t *testing.T) {
	ctx := ctxT(t)
	ns := uniqueName(t)
	h := startAgent(t, harnessOptions{node: "node-" + ns, tokenMode: agent.TokenIfPresent, wait: 100 * 1e6})
	for _, sa := range []string{"x", "y", "host"} {
		if _, err := env.CreateServiceAccount(ctx, ns, sa, map[string]string{testenv.RoleAnnotation: env.RoleARN}); err != nil {
			t.Fatal(err)
		}
	}
	ipX, ipY, nodeIP := addr(32, 0, 1), addr(32, 0, 2), addr(32, 0, 250)
	podX, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "x", ServiceAccount: "x", Node: h.node, IP: ipX})
	if err != nil {
		t.Fatal(err)
	}
	podY, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "y", ServiceAccount: "y", Node: h.node, IP: ipY})
	if err != nil {
		t.Fatal(err)
	}
	host, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "host", ServiceAccount: "host", Node: h.node, IP: nodeIP, HostNetwork: true})
	if err != nil {
		t.Fatal(err)
	}
	elsewhere, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "elsewhere", ServiceAccount: "host", Node: "other-" + h.node, IP: nodeIP, HostNetwork: true})
	if err != nil {
		t.Fatal(err)
	}
	gone, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "gone", ServiceAccount: "host", Node: h.node, IP: nodeIP, HostNetwork: true})
	if err != nil {
		t.Fatal(err)
	}
	tokX := podToken(t, ns, "x", podX.Name, string(podX.UID))
	tokHost := podToken(t, ns, "host", host.Name, string(host.UID))
	tokElsewhere := podToken(t, ns, "host", elsewhere.Name, string(elsewhere.UID))
	tokGone := podToken(t, ns, "host", gone.Name, string(gone.UID))
	if err := env.DeletePod(ctx, ns, "gone"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10e9, "the deletion to reach the agent", func() bool { return h.agent.Pod(gone.UID) == nil })
	tokWrongAudience := requestToken(ctx, t, ns, "x", testenv.Audience, podX.Name, string(podX.UID))

	for _, tc := range []struct {
		name  string
		from  [4]byte
		token string
		want  int
		sa    string
		check string // the podcreds_token_verifications_total result counted, if any
	}{
		{"a pod presenting its own token is served", ipX.As4(), tokX, http.StatusOK, "x", metrics.TokenValid},
		{"a pod without a token is served by address in if-present mode", ipY.As4(), "", http.StatusOK, "y", ""},
		{"pod X's token presented from pod Y's address is refused", ipY.As4(), tokX, http.StatusForbidden, "", metrics.TokenOtherPod},
		{"a token for another audience is refused, naming the audience check", ipX.As4(), tokWrongAudience, http.StatusUnauthorized, "", metrics.TokenInvalid},
		{"a forged token is refused", ipX.As4(), resign(t, tokX), http.StatusUnauthorized, "", metrics.TokenInvalid},
		{"a hostNetwork caller without a token is refused", nodeIP.As4(), "", http.StatusNotFound, "", ""},
		{"a hostNetwork caller with its running pod's token is served", nodeIP.As4(), tokHost, http.StatusOK, "host", metrics.TokenValid},
		// A node daemon's token that leaked into an ordinary pod must not
		// buy that pod the daemon's role.
		{"a hostNetwork pod's token presented from an ordinary pod's address is refused", ipY.As4(), tokHost, http.StatusForbidden, "", metrics.TokenOtherPod},
		{"a hostNetwork caller with the token of a pod on another node is refused", nodeIP.As4(), tokElsewhere, http.StatusNotFound, "", ""},
		{"a hostNetwork caller with a deleted pod's token is refused", nodeIP.As4(), tokGone, http.StatusNotFound, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			results := []string{metrics.TokenValid, metrics.TokenInvalid, metrics.TokenOtherPod, metrics.TokenUnavailable}
			before := map[string]float64{}
			for _, res := range results {
				before[res] = testutil.ToFloat64(h.metrics.TokenVerifications.WithLabelValues(res))
			}
			r := h.getWithToken(addr(tc.from[1], tc.from[2], tc.from[3]), tc.token)
			if r.Status != tc.want {
				t.Fatalf("answered %d %v, want %d", r.Status, r.Body, tc.want)
			}
			if tc.token == tokWrongAudience && !strings.Contains(r.Body["Message"], "failed the audience check") {
				t.Fatalf("the refusal does not say which check failed: %v", r.Body)
			}
			for _, res := range results {
				want := before[res]
				if res == tc.check {
					want++
				}
				if got := testutil.ToFloat64(h.metrics.TokenVerifications.WithLabelValues(res)); got != want {
					t.Errorf("podcreds_token_verifications_total{result=%q} went from %v to %v, want %v", res, before[res], got, want)
				}
			}
			if tc.sa != "" {
				if got, want := subject(t, r.Body["Token"]), "system:serviceaccount:"+ns+":"+tc.sa; got != want {
					t.Fatalf("served credentials of %s, want %s", got, want)
				}
			}
		})
	}
	_ = podY
}

func TestRequiredTokensRefuseBareRequests(t *testing.T) {
	ctx := ctxT(t)
	ns := uniqueName(t)
	h := startAgent(t, harnessOptions{node: "node-" + ns, tokenMode: agent.TokenRequired})
	if _, err := env.CreateServiceAccount(ctx, ns, "x", map[string]string{testenv.RoleAnnotation: env.RoleARN}); err != nil {
		t.Fatal(err)
	}
	ip := addr(33, 0, 1)
	pod, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "x", ServiceAccount: "x", Node: h.node, IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	if r := h.get(ip); r.Status != http.StatusUnauthorized {
		t.Fatalf("a request without a token answered %d %v, want 401", r.Status, r.Body)
	}
	if r := h.getWithToken(ip, podToken(t, ns, "x", pod.Name, string(pod.UID))); r.Status != http.StatusOK {
		t.Fatalf("a request with the pod's token answered %d %v", r.Status, r.Body)
	}
}

// The default DaemonSet serves IMDS, which carries no ServiceAccount token;
// required verification was refused alongside it, so the default deployment
// could not close the IP-reuse window on the container endpoint. Now the
// container endpoint requires the token and IMDS stays identified by address.
func TestRequiredTokensOnTheContainerEndpointWithIMDSByAddress(t *testing.T) {
	ctx := ctxT(t)
	ns := uniqueName(t)
	h := startAgent(t, harnessOptions{node: "node-" + ns, tokenMode: agent.TokenRequired, imds: true})
	if _, err := env.CreateServiceAccount(ctx, ns, "x", map[string]string{testenv.RoleAnnotation: env.RoleARN}); err != nil {
		t.Fatal(err)
	}
	ip := addr(33, 1, 1)
	pod, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "x", ServiceAccount: "x", Node: h.node, IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	if r := h.get(ip); r.Status != http.StatusUnauthorized {
		t.Fatalf("the container endpoint without a token answered %d %v, want 401", r.Status, r.Body)
	}
	if r := h.getWithToken(ip, podToken(t, ns, "x", pod.Name, string(pod.UID))); r.Status != http.StatusOK {
		t.Fatalf("the container endpoint with the pod's token answered %d %v", r.Status, r.Body)
	}

	base := "http://" + h.agent.IMDSAddrs()[0].String()
	client := imdsRecorder{podClient(ip)}
	req, _ := http.NewRequest(http.MethodPut, base+"/latest/api/token", nil)
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "60")
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	session, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("IMDS token PUT answered %d %q", res.StatusCode, session)
	}
	imdsGet := func(path string) (int, []byte) {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Header.Set("X-aws-ec2-metadata-token", string(session))
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b
	}
	code, role := imdsGet("/latest/meta-data/iam/security-credentials/")
	if code != http.StatusOK || len(role) == 0 {
		t.Fatalf("IMDS role list answered %d %q", code, role)
	}
	code, body := imdsGet("/latest/meta-data/iam/security-credentials/" + strings.TrimSpace(string(role)))
	var creds map[string]string
	if code != http.StatusOK || json.Unmarshal(body, &creds) != nil {
		t.Fatalf("IMDS credentials answered %d (body withheld: %d bytes)", code, len(body))
	}
	secrets.recordServed(creds)
	if got, want := subject(t, creds["Token"]), "system:serviceaccount:"+ns+":x"; got != want {
		t.Fatalf("IMDS served credentials of %s, want %s", got, want)
	}
}
