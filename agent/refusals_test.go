package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/clock"

	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/internal/testkit/golden"
	"github.com/podcreds/podcreds/internal/testkit/kubeclientset"
	"github.com/podcreds/podcreds/metrics"
	"github.com/podcreds/podcreds/oidc"
	"github.com/podcreds/podcreds/roles"
)

// TestRefusalBodies is the golden record (testdata/refusals.golden) of every
// refusal the agent package answers, each built by the code that answers it:
// status, Retry-After and the exact body, with its reason and no secret.
func TestRefusalBodies(t *testing.T) {
	const (
		roleA    = "arn:aws:iam::111111111111:role/app"
		elsewere = "arn:aws:iam::999999999999:role/app"
		secret   = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2Vu.sig" // a presented token
	)
	client := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Annotations: map[string]string{roles.AllowedRolesAnnotation: "arn:aws:iam::*:role/app"}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout", Annotations: map[string]string{roles.RoleAnnotation: roleA}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "plain"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "typo", Annotations: map[string]string{roles.RoleAnnotation: "app-role"}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "short", Annotations: map[string]string{roles.RoleAnnotation: roleA, roles.TokenExpirationAnnotation: "60"}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "locked", Name: "checkout"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "chained", Annotations: map[string]string{roles.RoleAnnotation: roleA, roles.TargetRoleAnnotation: "arn:aws:iam::111111111111:role/admin"}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "badtarget", Annotations: map[string]string{roles.RoleAnnotation: roleA, roles.TargetRoleAnnotation: "role/admin"}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "badname", Annotations: map[string]string{roles.RoleAnnotation: roleA, roles.SessionNameAnnotation: "my session"}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "badext", Annotations: map[string]string{roles.RoleAnnotation: roleA, roles.ExternalIDAnnotation: "x"}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "unreachable", Name: "checkout"}},
	)
	// ServiceAccounts in namespace "forbidden" and the namespace "locked"
	// fail as a missing RBAC grant would; those in "down" and the namespace
	// "unreachable" as an unreachable API server would.
	fail := func(action k8stesting.Action) (bool, runtime.Object, error) {
		get, ok := action.(k8stesting.GetAction)
		if !ok {
			return false, nil, nil
		}
		res := action.GetResource().Resource
		switch {
		case res == "serviceaccounts" && get.GetNamespace() == "forbidden", res == "namespaces" && get.GetName() == "locked":
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: res}, get.GetName(),
				fmt.Errorf(`User "system:serviceaccount:podcreds-system:podcreds" cannot get resource %q`, res))
		case res == "serviceaccounts" && get.GetNamespace() == "down", res == "namespaces" && get.GetName() == "unreachable":
			return true, nil, errors.New("dial tcp 10.96.0.1:443: connect: connection refused")
		}
		return false, nil, nil
	}
	client.PrependReactor("get", "*", fail)
	listFails := func(err error) {
		client.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, err })
	}
	resolver := roles.NewRoleResolver(kubeclientset.Wrap(client), clock.RealClock{}, time.Minute, "sts.amazonaws.com", time.Hour, []string{"111111111111"})
	resolve := func(ns, sa, role string) error {
		_, err := resolver.Resolve(context.Background(), roles.Pod{Namespace: ns, Name: "web-1", ServiceAccount: sa, RoleARN: role})
		return err
	}
	m := metrics.New(prometheus.NewRegistry())
	index := NewPodIndex(kubeclientset.Wrap(client), "node-a", time.Millisecond, zap.NewNop(), m, nil)
	lookup := func(ip string) error {
		_, err := index.lookupAPI(context.Background(), netip.MustParseAddr(ip))
		return err
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	_, lookupCancelled := index.Lookup(cancelled, netip.MustParseAddr("10.0.0.99"))
	hosts, _ := hostsFor("169.254.170.23:80")
	imds := newUnitIMDS(t, IMDSTokensRequired)
	imdsAnswer := func(r imdsReq) error {
		rec := imds.do(r)
		return fromRecorder(t, rec.Code, rec.Header(), rec.Body.Bytes())
	}
	limiter := newSourceLimiter(1, 1)
	now := time.Unix(1_700_000_000, 0)
	_ = limiter.allow(netip.MustParseAddr("10.0.0.1"), now)
	tooMany := limiter.allow(netip.MustParseAddr("10.0.0.1"), now)
	pods := []*Pod{{Namespace: "shop", Name: "web-1"}, {Namespace: "shop", Name: "web-2"}}

	refusals := []golden.Refusal{
		{"a method other than GET", errMethod},
		{"a Host header that is not the listener's (DNS rebinding)", hosts.refusal()},
		{"a path other than --credentials-path", errPath},
		{"a caller address that does not parse", errRemote},
		{"one address asking faster than --rate-limit", tooMany},
		{"an address no pod of this node has", unknown(netip.MustParseAddr("10.0.0.9"), "node-a")},
		{"an address no pod of this node has, after asking the API server", func() error { listFails(nil); return lookup("10.0.0.9") }()},
		{"two live pods with one address (IP reuse in progress)", ambiguous(netip.MustParseAddr("10.0.0.7"), pods)},
		{"the client hung up while its pod was being identified", lookupCancelled},
		{"unknown addresses asked faster than the agent's lookup budget", errLookupBudget},
		{"the API server cannot be reached to identify a new address", func() error {
			listFails(errors.New("connection refused"))
			return lookup("10.0.0.10")
		}()},
		{"the agent may not list pods", func() error {
			listFails(apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", errors.New("cannot list resource pods")))
			return lookup("10.0.0.11")
		}()},
		{"a ServiceAccount without eks.amazonaws.com/role-arn", resolve("shop", "plain", "")},
		{"a ServiceAccount that does not exist", resolve("shop", "ghost", "")},
		{"a role annotation that is not an ARN", resolve("shop", "typo", "")},
		{"a token-expiration annotation out of range", resolve("shop", "short", "")},
		{"a pod-chosen role the namespace does not allow", resolve("shop", "checkout", "arn:aws:iam::111111111111:role/admin")},
		{"a role in an account --allowed-accounts does not list", resolve("shop", "checkout", elsewere)},
		{"a pod without a ServiceAccount (a static pod)", resolve("shop", "", "")},
		{"a target role the namespace does not allow", resolve("shop", "chained", "")},
		{"a target-role annotation that is not an ARN", resolve("shop", "badtarget", "")},
		{"a session-name annotation STS would refuse", resolve("shop", "badname", "")},
		{"an external-id annotation STS would refuse", resolve("shop", "badext", "")},
		{"the agent may not get ServiceAccounts", resolve("forbidden", "checkout", "")},
		{"the agent may not get namespaces (pod-chosen role)", resolve("locked", "checkout", roleA)},
		{"the API server cannot be reached to read a ServiceAccount", resolve("down", "checkout", "")},
		{"the API server cannot be reached to read a namespace", resolve("unreachable", "checkout", roleA)},
		{"no token where --pod-token-verification=required", errTokenMissing},
		{"a token of the wrong audience", invalidToken(fmt.Errorf("%w: aud does not contain %q", oidc.ErrAudience, "podcreds"))},
		{"a token of another issuer", invalidToken(fmt.Errorf("%w: iss %q is not %q", oidc.ErrIssuer, "https://other", "https://kubernetes.default.svc"))},
		{"an expired token", invalidToken(fmt.Errorf("%w: expired at 2026-01-02T10:00:00Z (leeway 1m0s)", oidc.ErrExpired))},
		{"a token with a bad signature", invalidToken(oidc.ErrSignature)},
		{"a token that is not a JWT", invalidToken(fmt.Errorf("%w: not three parts", oidc.ErrMalformed))},
		{"a token of another pod than the one at the address", errTokenOtherPod},
		{"a hostNetwork pod's token when that pod is not running here", errHostNetwork},
		{"a hostNetwork pod's token from an address that is not the node's", errHostNetworkIP},
		{"the issuer's keys cannot be fetched", keysUnavailable(oidc.ErrDiscovery)},
		{"IMDS: a token PUT carrying X-Forwarded-For", imdsAnswer(imdsReq{method: http.MethodPut, path: imdsTokenPath,
			header: map[string]string{"X-Forwarded-For": "1.2.3.4", "X-Aws-Ec2-Metadata-Token-Ttl-Seconds": "60"}})},
		{"IMDS: a token TTL out of range", imdsAnswer(imdsReq{method: http.MethodPut, path: imdsTokenPath, header: map[string]string{"X-Aws-Ec2-Metadata-Token-Ttl-Seconds": "0"}})},
		{"IMDS: no session token with --imds-tokens=required", imdsAnswer(imdsReq{path: imdsRegionPath})},
		{"IMDS: a forged session token", imdsAnswer(imdsReq{path: imdsRegionPath, header: map[string]string{"X-Aws-Ec2-Metadata-Token": secret}})},
		{"IMDS: a path it does not serve", errIMDSNotFound},
		{"IMDS: a role name that is not the pod's", errIMDSRole},
		{"IMDS: no --imds-availability-zone", errIMDSZone},
		{"an error nothing classified", failure.From(errors.New("unexpected"))},
	}
	golden.Check(t, "refusals.golden", refusals, secret)
}

// fromRecorder turns a recorded error answer back into a *failure.Error, so
// refusals that only exist inside a handler are checked like the others.
func fromRecorder(t *testing.T, status int, h http.Header, body []byte) error {
	t.Helper()
	var b struct{ Code, Message string }
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("%d %s: %v", status, body, err)
	}
	fe := &failure.Error{Status: status, Code: b.Code, Message: b.Message}
	if ra := h.Get("Retry-After"); ra != "" {
		var s int
		_, _ = fmt.Sscan(ra, &s)
		fe.RetryAfter = time.Duration(s) * time.Second
	}
	return fe
}
