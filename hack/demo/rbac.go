package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/podcreds/podcreds/internal/testkit/testenv"
)

// The agent's own identity, as its DaemonSet would have it.
const (
	agentNamespace = "podcreds-system"
	agentSA        = "podcreds"
	agentRole      = "podcreds-agent"
)

// agentRules is everything the agent may do, and nothing more: find pods (on
// its node, by IP), read a ServiceAccount's role annotation, and mint tokens.
var agentRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{""}, Resources: []string{"serviceaccounts"}, Verbs: []string{"get"}},
	{APIGroups: []string{""}, Resources: []string{"serviceaccounts/token"}, Verbs: []string{"create"}},
}

// writeAgentKubeconfig creates the agent's ServiceAccount and its ClusterRole
// and binding, mints a one-hour token for it, writes a kubeconfig with that
// token to path, and proves with that kubeconfig that the agent can do what
// it needs and no more.
func writeAgentKubeconfig(ctx context.Context, u *ui, env *testenv.Env, path string) error {
	core, rbac := env.Client.CoreV1(), env.Client.RbacV1()
	if err := env.EnsureNamespace(ctx, agentNamespace); err != nil {
		return err
	}
	if _, err := core.ServiceAccounts(agentNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: agentSA}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create serviceaccount %s/%s: %w", agentNamespace, agentSA, err)
	}
	if _, err := rbac.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: agentRole}, Rules: agentRules}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create clusterrole %s: %w", agentRole, err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: agentRole},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: agentRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: agentNamespace, Name: agentSA}},
	}
	if _, err := rbac.ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create clusterrolebinding %s: %w", agentRole, err)
	}
	for _, r := range agentRules {
		u.line("      ", fmt.Sprintf("may %s %s", strings.Join(r.Verbs, "/"), strings.Join(r.Resources, ",")))
	}

	hour := int64(time.Hour / time.Second)
	tr, err := core.ServiceAccounts(agentNamespace).CreateToken(ctx, agentSA, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &hour},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("TokenRequest for the agent: %w", err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["demo"] = &clientcmdapi.Cluster{Server: env.APIServerURL, CertificateAuthorityData: env.CACertPEM}
	kc.AuthInfos[agentSA] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts["demo"] = &clientcmdapi.Context{Cluster: "demo", AuthInfo: agentSA, Namespace: agentNamespace}
	kc.CurrentContext = "demo"
	if err := clientcmd.WriteToFile(*kc, path); err != nil { // mode 0600: it holds a token
		return fmt.Errorf("write the agent's kubeconfig: %w", err)
	}
	u.line("      ", fmt.Sprintf("kubeconfig with a 1h token for system:serviceaccount:%s:%s: %s", agentNamespace, agentSA, path))
	return checkAgentAccess(ctx, u, path)
}

// access is one question put to the API server's authorizer.
type access struct {
	verb, resource, subresource string
	allowed                     bool // what least privilege expects
}

func (a access) String() string {
	r := a.resource
	if a.subresource != "" {
		r += "/" + a.subresource
	}
	return a.verb + " " + r
}

// checkAgentAccess asks the API server, as the agent (through the kubeconfig
// just written), what it may do. RBAC reaches the authorizer through an
// informer, so a fresh binding may need a moment: allowed rules are retried
// briefly, denials are final.
func checkAgentAccess(ctx context.Context, u *ui, kubeconfig string) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("load the agent's kubeconfig: %w", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	checks := []access{
		{"list", "pods", "", true},
		{"watch", "pods", "", true},
		{"get", "serviceaccounts", "", true},
		{"create", "serviceaccounts", "token", true},
		{"get", "secrets", "", false},
		{"delete", "pods", "", false},
		{"create", "pods", "", false},
	}
	var allowed, denied []string
	for _, c := range checks {
		got, err := canI(ctx, client, c)
		if err != nil {
			return err
		}
		if got != c.allowed {
			return fmt.Errorf("the agent's identity may %s: %v, want %v", c, got, c.allowed)
		}
		if got {
			allowed = append(allowed, c.String())
		} else {
			denied = append(denied, c.String())
		}
	}
	u.line("      ", "checked as the agent: allowed "+strings.Join(allowed, ", ")+"; denied "+strings.Join(denied, ", "))
	return nil
}

func canI(ctx context.Context, client kubernetes.Interface, c access) (bool, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		review, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: c.verb, Resource: c.resource, Subresource: c.subresource, Namespace: appNamespace,
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			return false, fmt.Errorf("ask the API server whether the agent may %s: %w", c, err)
		}
		if review.Status.Allowed || !c.allowed || time.Now().After(deadline) {
			return review.Status.Allowed, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
