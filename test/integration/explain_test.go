package integration

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podcreds/podcreds/agent"
	"github.com/podcreds/podcreds/explain"
	"github.com/podcreds/podcreds/internal/testkit/fakests"
	"github.com/podcreds/podcreds/internal/testkit/testenv"
	"github.com/podcreds/podcreds/kube"
	"github.com/podcreds/podcreds/roles"
	"github.com/podcreds/podcreds/webhook"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/explain/ from this run")

const (
	explainApp    = "arn:aws:iam::111111111111:role/app"
	explainTarget = "arn:aws:iam::222222222222:role/data/reader"
	explainDenied = "arn:aws:iam::222222222222:role/data/refused"
)

// explainSetup makes a namespace with one pod per path through the role
// decision and the webhook, and an agent (health listener on) on its node.
func explainSetup(t *testing.T, ns string, net byte) (h *agentHarness, opts explain.Options) {
	t.Helper()
	ctx := ctxT(t)
	if err := env.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	nsObj, err := env.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nsObj.Annotations = map[string]string{roles.AllowedRolesAnnotation: "arn:aws:iam::111111111111:role/pick-*, arn:aws:iam::333333333333:role/*, arn:aws:iam::222222222222:role/data/*"}
	if _, err := env.Client.CoreV1().Namespaces().Update(ctx, nsObj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	accounts := []string{"111111111111", "222222222222"}
	routed := &roleRoutedSTS{STS: fakests.New(time.Hour), fail: map[string]error{explainDenied: fakests.AccessDenied}}
	h = startAgent(t, harnessOptions{node: "node-" + ns, sts: routed, side: true, accounts: accounts})
	for name, ann := range map[string]map[string]string{
		"app":     {testenv.RoleAnnotation: explainApp},
		"plain":   nil,
		"tagged":  {testenv.RoleAnnotation: explainApp, roles.TargetRoleAnnotation: explainTarget, roles.SessionNameAnnotation: "kafka-client", roles.ExternalIDAnnotation: "tenant-42"},
		"refused": {testenv.RoleAnnotation: explainApp, roles.TargetRoleAnnotation: explainDenied},
	} {
		if _, err := env.CreateServiceAccount(ctx, ns, name, ann); err != nil {
			t.Fatal(err)
		}
	}
	for i, p := range []testenv.PodSpec{
		{Name: "by-serviceaccount", ServiceAccount: "app"},
		{Name: "by-pod-annotation", ServiceAccount: "app", Annotations: map[string]string{roles.PodRoleAnnotation: "arn:aws:iam::111111111111:role/pick-a"}},
		{Name: "refused-by-pattern", ServiceAccount: "app", Annotations: map[string]string{roles.PodRoleAnnotation: "arn:aws:iam::111111111111:role/admin"}},
		{Name: "refused-by-account", ServiceAccount: "app", Annotations: map[string]string{roles.PodRoleAnnotation: "arn:aws:iam::333333333333:role/x"}},
		{Name: "no-role", ServiceAccount: "plain"},
		{Name: "chained", ServiceAccount: "tagged"},
		{Name: "chain-refused", ServiceAccount: "refused"},
		{Name: "opted-out", ServiceAccount: "app", Labels: map[string]string{webhook.InjectLabel: "false"}},
	} {
		p.Namespace, p.Node, p.IP = ns, h.node, addr(81, net, byte(i+1))
		if _, err := env.RunPod(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	// Not on a node: created, never scheduled.
	automount := false
	if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "not-on-a-node"},
		Spec: corev1.PodSpec{ServiceAccountName: "app", AutomountServiceAccountToken: &automount,
			Containers: []corev1.Container{{Name: "app", Image: "podcreds.invalid/app:test"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	client, err := kube.New(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	opts = explain.Options{Client: client, AllowedAccounts: accounts, Audience: testenv.Audience, TokenExpiration: time.Hour,
		Webhook: webhook.Settings{Endpoint: "http://169.254.170.23/v1/credentials", TokenAudience: "podcreds", TokenExpiration: time.Hour, Region: testenv.Region}}
	return h, opts
}

// TestExplainGoldenFiles: `podcreds explain` of a pod for every path of the
// role decision and the webhook, against the real API server, in text and
// JSON, compared with testdata/explain/ (rewrite with -update-golden).
func TestExplainGoldenFiles(t *testing.T) {
	const ns = "explain-golden"
	_, opts := explainSetup(t, ns, 0)
	for _, pod := range []string{"by-serviceaccount", "by-pod-annotation", "refused-by-pattern", "refused-by-account",
		"no-role", "not-on-a-node", "chained", "opted-out"} {
		t.Run(pod, func(t *testing.T) {
			r, err := explain.Explain(ctxT(t), opts, ns, pod)
			if err != nil {
				t.Fatal(err)
			}
			r.Pod.UID = "uid-differs-per-run" // the only part that does
			var text bytes.Buffer
			if err := r.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			js, err := json.MarshalIndent(r, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", "explain", pod+".txt"), text.Bytes())
			golden(t, filepath.Join("testdata", "explain", pod+".json"), append(js, '\n'))
		})
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (create it with go test -run %s ./test/integration/ -update-golden, then read it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs; got:\n%s", path, got)
	}
}

// TestExplainAgentShowsLiveState: with --agent, explain adds what the
// pod's node agent holds right now, from its read-only debug endpoint: the
// cached entry's expiry and next refresh for a served pod, the second hop's
// last error for a refused chain; and the endpoint never shows a secret.
func TestExplainAgentShowsLiveState(t *testing.T) {
	const ns = "explain-live"
	h, opts := explainSetup(t, ns, 1)
	opts.Agent = h.agent.SideAddrs()[0].String()
	served := h.get(addr(81, 1, 1))
	if served.Status != http.StatusOK {
		t.Fatalf("by-serviceaccount: %d %v", served.Status, served.Body)
	}
	if r := h.get(addr(81, 1, 7)); r.Status != http.StatusForbidden || r.Body["code"] != "TargetRoleDenied" {
		t.Fatalf("chain-refused: %d %v, want 403 TargetRoleDenied", r.Status, r.Body)
	}

	r, err := explain.Explain(ctxT(t), opts, ns, "by-serviceaccount")
	if err != nil {
		t.Fatal(err)
	}
	// by-serviceaccount and opted-out (which only the webhook leaves
	// alone) share the entry of ServiceAccount app.
	c := r.Agent.Credentials
	if r.AgentError != "" || c == nil || !c.Cached || c.Expiration == nil || c.NextRefresh == nil || !c.NextRefresh.Before(*c.Expiration) ||
		c.Users != 2 || c.LastError != nil || r.Agent.Node != h.node {
		t.Fatalf("live state %+v (error %q), want cached credentials with their next refresh", r.Agent, r.AgentError)
	}
	wantExp, _ := time.Parse(time.RFC3339, served.Body["Expiration"])
	if !c.Expiration.Equal(wantExp) {
		t.Errorf("expiration %s, want the served %s", c.Expiration, wantExp)
	}
	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "cached, expires "+wantExp.UTC().Format(time.RFC3339)) || !strings.Contains(text.String(), "next refresh") {
		t.Errorf("text does not show the live state:\n%s", text.String())
	}

	r, err = explain.Explain(ctxT(t), opts, ns, "chain-refused")
	if err != nil {
		t.Fatal(err)
	}
	if r.Agent == nil || r.Agent.Credentials == nil || r.Agent.Credentials.LastError == nil ||
		r.Agent.Credentials.LastError.Code != "TargetRoleDenied" || !strings.Contains(r.Agent.Credentials.LastError.Message, explainDenied) {
		t.Fatalf("live state %+v, want the second hop's TargetRoleDenied", r.Agent)
	}
	text.Reset()
	_ = r.WriteText(&text)
	if !strings.Contains(text.String(), "last error (chain of "+explainApp+" then "+explainDenied+"): TargetRoleDenied") {
		t.Errorf("text does not show the chain's last error:\n%s", text.String())
	}

	r, err = explain.Explain(ctxT(t), opts, ns, "not-on-a-node")
	if err != nil {
		t.Fatal(err)
	}
	if r.Agent != nil || !strings.Contains(r.AgentError, "no pod "+ns+"/not-on-a-node on node "+h.node) {
		t.Errorf("a pod the agent does not have: %+v %q", r.Agent, r.AgentError)
	}

	t.Run("the debug endpoint shows no secret and changes nothing", func(t *testing.T) {
		u := "http://" + opts.Agent + agent.DebugPodPath + ns + "/by-serviceaccount"
		res, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		for _, k := range []string{"AccessKeyId", "SecretAccessKey", "Token"} {
			if v := served.Body[k]; v == "" || bytes.Contains(body, []byte(v)) {
				t.Errorf("the debug endpoint shows the served %s (or nothing was served)", k)
			}
		}
		chained, err := http.Get("http://" + opts.Agent + agent.DebugPodPath + ns + "/chained")
		if err != nil {
			t.Fatal(err)
		}
		cb, _ := io.ReadAll(chained.Body)
		chained.Body.Close()
		if bytes.Contains(cb, []byte("tenant-42")) || !bytes.Contains(cb, []byte(`"externalId": true`)) {
			t.Errorf("the debug endpoint must say an external id is set without showing it:\n%s", cb)
		}
		post, err := http.Post(u, "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		pb, _ := io.ReadAll(post.Body)
		post.Body.Close()
		if post.StatusCode != http.StatusMethodNotAllowed || !bytes.Contains(pb, []byte("read-only: use GET")) {
			t.Errorf("POST answered %d %s, want 405 saying to use GET", post.StatusCode, pb)
		}
		short, err := http.Get("http://" + opts.Agent + agent.DebugPodPath + ns)
		if err != nil {
			t.Fatal(err)
		}
		sb, _ := io.ReadAll(short.Body)
		short.Body.Close()
		if short.StatusCode != http.StatusNotFound || !bytes.Contains(sb, []byte("ask for one pod")) {
			t.Errorf("a namespace alone answered %d %s, want 404 saying what to ask", short.StatusCode, sb)
		}
	})
}
