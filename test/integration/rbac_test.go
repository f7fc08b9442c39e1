package integration

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/podcreds/podcreds/agent"
	"github.com/podcreds/podcreds/internal/testkit/testenv"
	"github.com/podcreds/podcreds/roles"
)

// shippedRole is deploy/rbac.yaml's ClusterRole bound, under unique names, to
// a ServiceAccount of the test's own, and a client that is that
// ServiceAccount: the agent's identity as installed, not the suite's admin.
type shippedRole struct {
	t      *testing.T
	role   *rbacv1.ClusterRole // as shipped, renamed
	config *rest.Config        // the agent's identity
	as     kubernetes.Interface
}

func bindShippedRole(ctx context.Context, t *testing.T, ns string) *shippedRole {
	t.Helper()
	objs, err := renderKustomization(deployDir)
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	decodeInto(t, mustFind(t, objs, "ClusterRole", "", "podcreds-agent"), &role)
	suffix := randomSuffix(t)
	role.ObjectMeta = metav1.ObjectMeta{Name: "podcreds-agent-" + suffix}
	if _, err := env.Client.RbacV1().ClusterRoles().Create(ctx, &role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Client.RbacV1().ClusterRoles().Delete(context.Background(), role.Name, metav1.DeleteOptions{})
	})
	if _, err := env.CreateServiceAccount(ctx, ns, "podcreds", nil); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "podcreds", Namespace: ns}},
	}
	if _, err := env.Client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Client.RbacV1().ClusterRoleBindings().Delete(context.Background(), binding.Name, metav1.DeleteOptions{})
	})
	tr, err := env.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "podcreds", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &rest.Config{Host: env.APIServerURL, BearerToken: tr.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAData: env.CACertPEM}}
	as, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &shippedRole{t: t, role: &role, config: cfg, as: as}
	s.waitFor(ctx, "list", "pods", "", true)
	return s
}

// can asks the API server, as the agent, whether it may verb resource.
func (s *shippedRole) can(ctx context.Context, verb, resource, subresource string) bool {
	s.t.Helper()
	r, err := s.as.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Verb: verb, Resource: resource, Subresource: subresource, Namespace: "any"}},
	}, metav1.CreateOptions{})
	if err != nil {
		s.t.Fatalf("SelfSubjectAccessReview: %v", err)
	}
	return r.Status.Allowed
}

// waitFor waits until the API server's authorizer (which reads RBAC objects
// through an informer) agrees that the agent may, or may not, verb resource.
func (s *shippedRole) waitFor(ctx context.Context, verb, resource, subresource string, allowed bool) {
	s.t.Helper()
	eventually(s.t, 15*time.Second, "RBAC to take effect", func() bool { return s.can(ctx, verb, resource, subresource) == allowed })
}

// without replaces the ClusterRole's rules by the shipped ones minus verb on
// resource, waits for that to take effect, and returns a func restoring them.
func (s *shippedRole) without(ctx context.Context, verb, resource string) (restore func()) {
	s.t.Helper()
	var rules []rbacv1.PolicyRule
	for _, r := range s.role.Rules {
		r = *r.DeepCopy()
		if slices.Contains(r.Resources, resource) {
			r.Verbs = slices.DeleteFunc(r.Verbs, func(v string) bool { return v == verb })
		}
		if len(r.Verbs) > 0 {
			rules = append(rules, r)
		}
	}
	s.setRules(ctx, rules)
	res, sub, _ := strings.Cut(resource, "/")
	s.waitFor(ctx, verb, res, sub, false)
	return func() {
		s.setRules(ctx, s.role.Rules)
		s.waitFor(ctx, verb, res, sub, true)
	}
}

func (s *shippedRole) setRules(ctx context.Context, rules []rbacv1.PolicyRule) {
	s.t.Helper()
	cur, err := env.Client.RbacV1().ClusterRoles().Get(ctx, s.role.Name, metav1.GetOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	cur.Rules = rules
	if _, err := env.Client.RbacV1().ClusterRoles().Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		s.t.Fatal(err)
	}
}

// TestShippedClusterRoleServesEveryDocumentedFeature runs the agent as a
// ServiceAccount holding exactly deploy/rbac.yaml's ClusterRole (not the
// suite's admin) and walks every documented way of getting credentials; then
// takes each grant away in turn and checks that the pod is told, finally
// (4xx, no Retry-After), which grant is missing.
func TestShippedClusterRoleServesEveryDocumentedFeature(t *testing.T) {
	ctx := ctxT(t)
	ns := uniqueName(t)
	if err := env.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	shipped := bindShippedRole(ctx, t, ns)
	h := startAgent(t, harnessOptions{node: "node-" + ns, client: secrets.clientFor(shipped.config),
		tokenMode: agent.TokenIfPresent, imds: true, wait: 100 * time.Millisecond,
		events: true, eventsConfig: shipped.config, eventInterval: time.Second})

	// The namespace lets its pods pick any role MinIO knows, and no other.
	allowed := env.RoleARN[:strings.LastIndex(env.RoleARN, "/")+1] + "*"
	setAllowedRoles(ctx, t, ns, allowed)
	for sa, annotations := range map[string]map[string]string{
		"fromsa": {testenv.RoleAnnotation: env.RoleARN},
		"picker": nil,
		"host":   {testenv.RoleAnnotation: env.RoleARN},
	} {
		if _, err := env.CreateServiceAccount(ctx, ns, sa, annotations); err != nil {
			t.Fatal(err)
		}
	}
	run := func(spec testenv.PodSpec) *corev1.Pod {
		t.Helper()
		spec.Namespace, spec.Node = ns, h.node
		p, err := env.RunPod(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	ipSA, ipPick, ipDenied, nodeIP := addr(60, 0, 1), addr(60, 0, 2), addr(60, 0, 3), addr(60, 0, 250)
	run(testenv.PodSpec{Name: "fromsa", ServiceAccount: "fromsa", IP: ipSA})
	run(testenv.PodSpec{Name: "pick", ServiceAccount: "picker", IP: ipPick,
		Annotations: map[string]string{roles.PodRoleAnnotation: env.RoleARN}})
	run(testenv.PodSpec{Name: "denied", ServiceAccount: "picker", IP: ipDenied,
		Annotations: map[string]string{roles.PodRoleAnnotation: "arn:aws:iam::123456789012:role/not-listed"}})
	host := run(testenv.PodSpec{Name: "host", ServiceAccount: "host", IP: nodeIP, HostNetwork: true})
	tokHost := podToken(t, ns, "host", host.Name, string(host.UID))

	served := func(t *testing.T, r reply, sa string) {
		t.Helper()
		if r.Status != http.StatusOK {
			t.Fatalf("answered %d %v, want credentials", r.Status, r.Body)
		}
		if got, want := subject(t, r.Body["Token"]), "system:serviceaccount:"+ns+":"+sa; got != want {
			t.Fatalf("served credentials of %s, want %s", got, want)
		}
	}
	t.Run("the role from the ServiceAccount is served", func(t *testing.T) {
		served(t, h.get(ipSA), "fromsa")
	})
	t.Run("a pod-chosen role the namespace allows is served", func(t *testing.T) {
		served(t, h.get(ipPick), "picker")
	})
	t.Run("a pod-chosen role the namespace does not allow is refused", func(t *testing.T) {
		r := h.get(ipDenied)
		if r.Status != http.StatusForbidden || r.Body["Code"] != "RoleNotAllowed" || r.RetryAfter != "" {
			t.Fatalf("answered %d %v retry-after %q, want a final 403 RoleNotAllowed", r.Status, r.Body, r.RetryAfter)
		}
	})
	t.Run("the refused pod gets an Event, and a repeat after the interval its series", func(t *testing.T) {
		// tools/events creates the Event, then patches its series: the
		// shipped events create/patch must be all it needs.
		emitted := func() float64 {
			return testutil.ToFloat64(h.metrics.Events.WithLabelValues("RoleNotAllowed", "emitted"))
		}
		eventually(t, 10*time.Second, "the Event written", func() bool { return emitted() == 1 })
		time.Sleep(1100 * time.Millisecond)
		if r := h.get(ipDenied); r.Status != http.StatusForbidden {
			t.Fatalf("answered %d %v, want 403", r.Status, r.Body)
		}
		eventually(t, 10*time.Second, "the series written", func() bool { return emitted() == 2 })
		evs := podEvents(ctx, t, ns, "denied")
		if len(evs) != 1 || evs[0].Reason != "RoleNotAllowed" || seriesCount(evs[0]) != 2 {
			t.Fatalf("Events %+v, want one RoleNotAllowed with a series of 2", evs)
		}
		if f := testutil.ToFloat64(h.metrics.Events.WithLabelValues("RoleNotAllowed", "failed")); f != 0 {
			t.Fatalf("%v Event writes failed with the shipped grants", f)
		}
	})
	t.Run("a hostNetwork pod presenting its token is served", func(t *testing.T) {
		served(t, h.getWithToken(nodeIP, tokHost), "host")
	})
	t.Run("a hostNetwork pod without a token is refused", func(t *testing.T) {
		if r := h.get(nodeIP); r.Status != http.StatusNotFound || r.Body["Code"] != "PodNotFound" {
			t.Fatalf("answered %d %v, want 404 PodNotFound", r.Status, r.Body)
		}
	})
	t.Run("IMDS serves the pod's role", func(t *testing.T) {
		imdsURL := "http://" + h.agent.IMDSAddrs()[0].String()
		c := podClient(ipSA)
		req, _ := http.NewRequest(http.MethodPut, imdsURL+"/latest/api/token", nil)
		req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "60")
		token := string(mustRead(t, c, req, http.StatusOK))
		req, _ = http.NewRequest(http.MethodGet, imdsURL+"/latest/meta-data/iam/security-credentials/", nil)
		req.Header.Set("X-aws-ec2-metadata-token", token)
		name := strings.TrimSpace(string(mustRead(t, c, req, http.StatusOK)))
		if name == "" || !strings.HasSuffix(env.RoleARN, "/"+name) {
			t.Fatalf("IMDS lists role %q, want the last part of %s", name, env.RoleARN)
		}
		req, _ = http.NewRequest(http.MethodGet, imdsURL+"/latest/meta-data/iam/security-credentials/"+name, nil)
		req.Header.Set("X-aws-ec2-metadata-token", token)
		if body := mustRead(t, c, req, http.StatusOK); !strings.Contains(string(body), `"Code":"Success"`) {
			t.Fatalf("IMDS credentials: %s", body)
		}
	})

	// Each grant taken away, for a caller that needs it and that the agent
	// has not answered before (so nothing it remembers hides the refusal).
	refusedNaming := func(t *testing.T, r reply, code, grant string) {
		t.Helper()
		if r.Status != http.StatusForbidden || r.RetryAfter != "" || r.Body["Code"] != code || !strings.Contains(r.Body["Message"], grant) {
			t.Fatalf("answered %d retry-after %q %v, want a final 403 %s naming %q", r.Status, r.RetryAfter, r.Body, code, grant)
		}
	}
	t.Run("without namespaces get, a pod-chosen role is refused naming the grant", func(t *testing.T) {
		ns2 := ns + "-b"
		if err := env.EnsureNamespace(ctx, ns2); err != nil {
			t.Fatal(err)
		}
		setAllowedRoles(ctx, t, ns2, allowed)
		if _, err := env.CreateServiceAccount(ctx, ns2, "picker", nil); err != nil {
			t.Fatal(err)
		}
		defer shipped.without(ctx, "get", "namespaces")()
		ip := addr(60, 1, 1)
		if _, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns2, Name: "pick", ServiceAccount: "picker", Node: h.node, IP: ip,
			Annotations: map[string]string{roles.PodRoleAnnotation: env.RoleARN}}); err != nil {
			t.Fatal(err)
		}
		refusedNaming(t, h.get(ip), "AgentForbidden", "get on namespaces")
	})
	t.Run("without serviceaccounts get, the pod is refused naming the grant", func(t *testing.T) {
		if _, err := env.CreateServiceAccount(ctx, ns, "unread", map[string]string{testenv.RoleAnnotation: env.RoleARN}); err != nil {
			t.Fatal(err)
		}
		defer shipped.without(ctx, "get", "serviceaccounts")()
		ip := addr(60, 2, 1)
		run(testenv.PodSpec{Name: "unread", ServiceAccount: "unread", IP: ip})
		refusedNaming(t, h.get(ip), "AgentForbidden", "get on serviceaccounts")
	})
	t.Run("without serviceaccounts/token create, the pod is refused naming the grant", func(t *testing.T) {
		if _, err := env.CreateServiceAccount(ctx, ns, "untokened", map[string]string{testenv.RoleAnnotation: env.RoleARN}); err != nil {
			t.Fatal(err)
		}
		defer shipped.without(ctx, "create", "serviceaccounts/token")()
		ip := addr(60, 3, 1)
		run(testenv.PodSpec{Name: "untokened", ServiceAccount: "untokened", IP: ip})
		refusedNaming(t, h.get(ip), "TokenRequestForbidden", "create on serviceaccounts/token")
	})
	t.Run("without pods list, an address the informer has not seen is refused naming the grant", func(t *testing.T) {
		defer shipped.without(ctx, "list", "pods")()
		refusedNaming(t, h.get(addr(60, 4, 1)), "AgentForbidden", "list on pods")
	})
}

func setAllowedRoles(ctx context.Context, t *testing.T, ns, patterns string) {
	t.Helper()
	n, err := env.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Annotations == nil {
		n.Annotations = map[string]string{}
	}
	n.Annotations[roles.AllowedRolesAnnotation] = patterns
	if _, err := env.Client.CoreV1().Namespaces().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// mustRead does req with c and returns the body, failing unless the status is
// want.
func mustRead(t *testing.T, c *http.Client, req *http.Request, want int) []byte {
	t.Helper()
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		t.Fatalf("%s %s answered %d %s, want %d", req.Method, req.URL.Path, res.StatusCode, b, want)
	}
	return b
}
