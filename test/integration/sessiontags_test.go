package integration

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/internal/testkit/fakests"
	"github.com/podcreds/podcreds/internal/testkit/testenv"
	"github.com/podcreds/podcreds/roles"
	"github.com/podcreds/podcreds/tokenreq"
)

const (
	chainFirst  = "arn:aws:iam::111111111111:role/app"
	chainTarget = "arn:aws:iam::222222222222:role/data/reader"
)

// chainNamespace creates a namespace whose pods may chain into data/* roles.
func chainNamespace(t *testing.T, ns string) {
	t.Helper()
	if err := env.EnsureNamespace(ctxT(t), ns); err != nil {
		t.Fatal(err)
	}
	nsObj, err := env.Client.CoreV1().Namespaces().Get(ctxT(t), ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if nsObj.Annotations == nil {
		nsObj.Annotations = map[string]string{}
	}
	nsObj.Annotations[roles.AllowedRolesAnnotation] = "arn:aws:iam::222222222222:role/data/*"
	if _, err := env.Client.CoreV1().Namespaces().Update(ctxT(t), nsObj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestSecondHopMakesOneCallOfEachHopPerServiceAccountAndRefresh: however
// many pods of one ServiceAccount ask, each refresh is one
// AssumeRoleWithWebIdentity and one AssumeRole, and the second carries
// exactly the tags, session name, external id and duration asked for.
func TestSecondHopMakesOneCallOfEachHopPerServiceAccountAndRefresh(t *testing.T) {
	ctx := ctxT(t)
	ns := uniqueName(t)
	chainNamespace(t, ns)
	fake := fakests.New(6 * time.Second) // short enough to see refreshes; the first hop is renewed with each
	fake.SetLatency(300 * time.Millisecond)
	h := startAgent(t, harnessOptions{node: "node-" + ns, sts: fake, cache: cache.Options{
		SafetyMargin: 300 * time.Millisecond, RefreshFraction: 0.5, RefreshJitter: 0.05, RefreshBefore: time.Nanosecond,
	}})
	if _, err := env.CreateServiceAccount(ctx, ns, "tagged", map[string]string{
		testenv.RoleAnnotation: chainFirst, roles.TargetRoleAnnotation: chainTarget,
		roles.SessionNameAnnotation: "kafka-client", roles.ExternalIDAnnotation: "tenant-42",
	}); err != nil {
		t.Fatal(err)
	}
	const pods = 15
	for i := range pods {
		if _, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "p" + string(rune('a'+i)), ServiceAccount: "tagged", Node: h.node, IP: addr(61, 0, byte(i+1))}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for i := range pods * 4 {
		wg.Go(func() {
			r := h.get(addr(61, 0, byte(i%pods+1)))
			if r.Status != http.StatusOK || !strings.HasPrefix(r.Body["AccessKeyId"], "ASIACHAIN") {
				t.Errorf("request %d: %d %v, want the second hop's credentials", i, r.Status, r.Body)
			}
		})
	}
	wg.Wait()
	eventually(t, 30*time.Second, "three second hops (two background refreshes)", func() bool { return fake.ChainCalls.Load() >= 3 })
	h.stop()
	first, second := fake.Calls.Load(), fake.ChainCalls.Load()
	if first != second {
		t.Errorf("%d first-hop and %d second-hop calls for one ServiceAccount, want one of each per refresh", first, second)
	}
	for i, in := range fake.ChainInputs() {
		tags := map[string]string{}
		for _, tg := range in.Tags {
			tags[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
		}
		if aws.ToString(in.RoleArn) != chainTarget || aws.ToString(in.RoleSessionName) != "kafka-client" ||
			aws.ToString(in.ExternalId) != "tenant-42" || aws.ToInt32(in.DurationSeconds) != 900 ||
			len(tags) != 2 || tags[tokenreq.TagNamespace] != ns || tags[tokenreq.TagServiceAccount] != "tagged" ||
			strings.Join(in.TransitiveTagKeys, ",") != tokenreq.TagNamespace+","+tokenreq.TagServiceAccount {
			t.Errorf("AssumeRole %d: role %s session %s external id %s duration %d tags %v transitive %v",
				i, aws.ToString(in.RoleArn), aws.ToString(in.RoleSessionName), aws.ToString(in.ExternalId),
				aws.ToInt32(in.DurationSeconds), tags, in.TransitiveTagKeys)
		}
	}
}

// TestARefusedSecondHopKeepsTheFirst: a final error on the second hop is
// the pod's answer (403, the target role named), and once it clears, the
// cached first hop signs the retry: no second web-identity call.
func TestARefusedSecondHopKeepsTheFirst(t *testing.T) {
	ctx := ctxT(t)
	ns := uniqueName(t)
	chainNamespace(t, ns)
	fake := fakests.New(time.Hour)
	fake.SetChainFail(&smithy.GenericAPIError{Code: "AccessDenied", Message: "not authorized to perform: sts:TagSession", Fault: smithy.FaultClient})
	h := startAgent(t, harnessOptions{node: "node-" + ns, sts: fake, cache: cache.Options{FinalErrorTTL: time.Second}})
	if _, err := env.CreateServiceAccount(ctx, ns, "tagged", map[string]string{testenv.RoleAnnotation: chainFirst, roles.TargetRoleAnnotation: chainTarget}); err != nil {
		t.Fatal(err)
	}
	ip := addr(62, 0, 1)
	if _, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "p", ServiceAccount: "tagged", Node: h.node, IP: ip}); err != nil {
		t.Fatal(err)
	}
	var r reply
	eventually(t, 10*time.Second, "the refusal", func() bool { r = h.get(ip); return r.Status == http.StatusForbidden })
	if r.Body["code"] != "TargetRoleDenied" || !strings.Contains(r.Body["message"], chainTarget) || !strings.Contains(r.Body["message"], "sts:TagSession") {
		t.Errorf("refusal %v, want TargetRoleDenied naming the target and STS's reason", r.Body)
	}
	fake.SetChainFail(nil)
	eventually(t, 10*time.Second, "credentials once the second hop is allowed", func() bool { return h.get(ip).Status == http.StatusOK })
	if n := fake.Calls.Load(); n != 1 {
		t.Errorf("%d first-hop calls, want 1: the refused second hop must not drop the first", n)
	}
}

// TestTargetRoleOutsideTheNamespacePolicyIsRefused: the namespace's
// patterns govern target roles; nothing is asked of STS.
func TestTargetRoleOutsideTheNamespacePolicyIsRefused(t *testing.T) {
	ctx := ctxT(t)
	ns := uniqueName(t)
	chainNamespace(t, ns)
	fake := fakests.New(time.Hour)
	h := startAgent(t, harnessOptions{node: "node-" + ns, sts: fake})
	if _, err := env.CreateServiceAccount(ctx, ns, "wide", map[string]string{testenv.RoleAnnotation: chainFirst,
		roles.TargetRoleAnnotation: "arn:aws:iam::222222222222:role/admin"}); err != nil {
		t.Fatal(err)
	}
	ip := addr(63, 0, 1)
	if _, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "p", ServiceAccount: "wide", Node: h.node, IP: ip}); err != nil {
		t.Fatal(err)
	}
	var r reply
	eventually(t, 10*time.Second, "the refusal", func() bool { r = h.get(ip); return r.Status != http.StatusServiceUnavailable })
	if r.Status != http.StatusForbidden || r.Body["code"] != "TargetRoleNotAllowed" {
		t.Errorf("got %d %v, want 403 TargetRoleNotAllowed", r.Status, r.Body)
	}
	if n := fake.Calls.Load() + fake.ChainCalls.Load(); n != 0 {
		t.Errorf("%d STS calls for a refused target role, want 0", n)
	}
}

// TestMinIOSecondHop records what MinIO does with the second hop: an
// AssumeRole signed by credentials from its own AssumeRoleWithWebIdentity.
// MinIO's AssumeRole serves its own users, so this is where the fake stands
// in for AWS; the test keeps that statement true.
func TestMinIOSecondHop(t *testing.T) {
	ctx := ctxT(t)
	ns := uniqueName(t)
	if _, err := env.CreateServiceAccount(ctx, ns, "app", nil); err != nil {
		t.Fatal(err)
	}
	pod, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "p", ServiceAccount: "app", Node: "node-" + ns, IP: addr(64, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	token := requestToken(ctx, t, ns, "app", testenv.Audience, pod.Name, string(pod.UID))
	first, err := env.STSClient().AssumeRoleWithWebIdentity(ctx, &sts.AssumeRoleWithWebIdentityInput{
		RoleArn: aws.String(env.RoleARN), RoleSessionName: aws.String("first"), WebIdentityToken: aws.String(token), DurationSeconds: aws.Int32(900)})
	if err != nil {
		t.Fatalf("first hop against MinIO: %v", err)
	}
	c := first.Credentials
	signer := credentials.NewStaticCredentialsProvider(*c.AccessKeyId, *c.SecretAccessKey, *c.SessionToken)
	_, err = env.STSClient().AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(env.RoleARN), RoleSessionName: aws.String("second"), DurationSeconds: aws.Int32(900)},
		func(o *sts.Options) { o.Credentials = signer })
	if err == nil {
		t.Fatal("MinIO accepted a chained AssumeRole from web-identity credentials: test the two-hop chain against MinIO instead of the fake")
	}
	var apiErr smithy.APIError
	if !strings.Contains(err.Error(), "AccessDenied") && !(errors.As(err, &apiErr) && apiErr.ErrorCode() != "") {
		t.Fatalf("MinIO refused the second hop without an STS error: %v", err)
	}
	t.Logf("MinIO refuses a second hop signed by web-identity credentials: %v", err)
}
