package tokenreq

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/smithy-go"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/podcreds/podcreds/internal/testkit/golden"
)

// TestRefusalBodies is the golden record (testdata/refusals.golden) of every
// refusal that starts in this package: the TokenRequest API's and STS's
// answers as podcreds passes them on, each with its reason and never the
// token.
func TestRefusalBodies(t *testing.T) {
	gr := func(resource string) schema.GroupResource { return schema.GroupResource{Resource: resource} }
	tokenErr := func(err error) error { return classifyTokenError(err, podSpec) }
	stsErr := func(code string, fault smithy.ErrorFault) error {
		// STS echoing the token back must not reach the caller.
		return classifySTSError(&smithy.GenericAPIError{Code: code, Message: "rejected " + testToken, Fault: fault}, testToken, testRole, "ServiceAccount shop/checkout")
	}
	ex, err := NewExchanger(&fakeTokens{token: testToken}, &fakeSTS{out: nil}, ExchangerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	noRole := testKey
	noRole.RoleARN = ""
	_, fetchNoRole := ex.Fetch(context.Background(), noRole, testPod)
	_, incomplete := ex.Fetch(context.Background(), testKey, testPod)
	f := newTokenFixture()
	_, tooShort := f.m.Token(context.Background(), testSpec("checkout-7d9f", "uid-1", time.Minute))
	_, noToken := f.m.fromResponse(nil, podSpec, t0, 3600)

	chained := testKey
	chained.TargetRoleARN = testTarget
	_, noChain := ex.Fetch(context.Background(), chained, testPod)
	refusedHop := &chainSTS{}
	refusedHop.set(nil, &smithy.GenericAPIError{Code: "AccessDenied", Message: "not authorized to perform: sts:TagSession", Fault: smithy.FaultClient})
	chainEx, _ := newChain(t, refusedHop, ExchangerOptions{})
	_, targetDenied := chainEx.Fetch(context.Background(), chained, testPod)

	golden.Check(t, "refusals.golden", []golden.Refusal{
		{"second hop: this agent cannot chain", noChain},
		{"second hop: STS refuses the target role (trust policy, sts:TagSession)", targetDenied},
		{"TokenRequest: the ServiceAccount does not exist", tokenErr(apierrors.NewNotFound(gr("serviceaccounts"), "checkout"))},
		{"TokenRequest: the pod no longer exists", tokenErr(apierrors.NewNotFound(gr("pods"), "checkout-7d9f"))},
		{"TokenRequest: the pod was replaced by one of the same name", tokenErr(apierrors.NewConflict(gr("pods"), "checkout-7d9f", errors.New("uid mismatch")))},
		{"TokenRequest: the agent may not create serviceaccounts/token", tokenErr(apierrors.NewForbidden(gr("serviceaccounts"), "checkout", errors.New("RBAC: access denied")))},
		{"TokenRequest: the API server rejects the request (pod of another ServiceAccount)", tokenErr(apierrors.NewBadRequest("cannot bind token"))},
		{"TokenRequest: the API server throttles", tokenErr(apierrors.NewTooManyRequests("slow down", 3))},
		{"TokenRequest: the API server is unavailable", tokenErr(apierrors.NewServiceUnavailable("down"))},
		{"TokenRequest: a token lifetime below 10 minutes", tooShort},
		{"TokenRequest: an answer without a token", noToken},
		{"no role for the ServiceAccount", fetchNoRole},
		{"STS: an answer without complete credentials", incomplete},
		{"STS: the role's trust policy refuses the ServiceAccount", stsErr("AccessDenied", smithy.FaultClient)},
		{"STS: the token is not accepted (OIDC provider, audience)", stsErr("InvalidIdentityToken", smithy.FaultClient)},
		{"STS: the token expired", stsErr("ExpiredTokenException", smithy.FaultClient)},
		{"STS: the region is not enabled for the account", stsErr("RegionDisabledException", smithy.FaultClient)},
		{"STS: the request is invalid (session duration above the role's maximum)", stsErr("ValidationError", smithy.FaultClient)},
		{"STS: throttling", stsErr("Throttling", smithy.FaultClient)},
		{"STS: unavailable", stsErr("ServiceUnavailable", smithy.FaultServer)},
		{"STS: the node's STS budget is spent", errBudgetSpent},
	}, testToken)
}
