package webhook

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/roles"
)

func TestExplainDecidesAsAdmissionDoes(t *testing.T) {
	const plain = `{"metadata":{"name":"p","namespace":"ns"},"spec":{"serviceAccountName":"sa","containers":[{"name":"app"},{"name":"side","env":[{"name":"AWS_PROFILE","value":"x"}]}]}}`
	const optedOut = `{"metadata":{"name":"p","namespace":"ns","labels":{"podcreds.io/inject":"false"}},"spec":{"containers":[{"name":"app"}]}}`
	const clash = `{"metadata":{"name":"p","namespace":"ns"},"spec":{"containers":[{"name":"app"}],"volumes":[{"name":"podcreds-token","emptyDir":{}}]}}`
	refused := failure.Final(http.StatusForbidden, "RoleNotAllowed", "pod ns/p asks for role x", nil)
	for _, tc := range []struct {
		name    string
		pod     string
		roleErr error
		check   func(Decision) bool
	}{
		{"a pod with a role is injected, containers that choose their credentials are not", plain, nil, func(d Decision) bool {
			return d.Inject && strings.Join(d.Containers, ",") == "app" && d.Volume != "" &&
				strings.Join(d.Env, ",") == EnvTokenFile+"="+TokenFile+","+EnvRelativeURI+"=/v1/credentials"
		}},
		{"a pod the agent would refuse is left alone, with a warning", plain, refused, func(d Decision) bool {
			return !d.Inject && strings.Contains(d.Why, "RoleNotAllowed") && len(d.Warnings) == 1
		}},
		{"a pod without a role is left alone without a warning", plain, failure.Final(http.StatusNotFound, "NoRole", "no role", nil), func(d Decision) bool {
			return !d.Inject && len(d.Warnings) == 0
		}},
		{"an opted-out pod is left alone", optedOut, nil, func(d Decision) bool { return !d.Inject && strings.Contains(d.Why, InjectLabel+"=false") }},
		{"a volume of podcreds' name makes admission fail", clash, nil, func(d Decision) bool { return d.Refused && strings.Contains(d.Why, "rename it") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := explainWith(context.Background(), []byte(tc.pod), func(context.Context, roles.Pod) error { return tc.roleErr }, testSettings)
			if err != nil || !tc.check(d) {
				t.Fatalf("%+v, %v", d, err)
			}
		})
	}
	down := failure.Retriable("ServiceAccountLookupFailed", "down", 0, nil)
	if _, err := explainWith(context.Background(), []byte(plain), func(context.Context, roles.Pod) error { return down }, testSettings); err == nil {
		t.Error("a decision that could not be made explained as one")
	}
}
