package integration

import (
	"context"
	"testing"
	"time"

	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/internal/testkit/testenv"
)

// A shared entry's fetch is bound to one of its users. The real API server
// refuses a TokenRequest bound to a deleted pod; that answer once became the
// entry's final error, so a live sibling of the same ServiceAccount was told
// "pod X no longer exists". Here the cache is driven directly (the pods are
// on another node, so the agent's binder leaves them alone), as the agent
// would while its informer still lists a force-deleted pod.
func TestGonePodOfOneUserDoesNotFailItsSiblingsOnTheAPIServer(t *testing.T) {
	ctx := ctxT(t)
	ns := uniqueName(t)
	h := startAgent(t, harnessOptions{node: "node-" + ns})
	if _, err := env.CreateServiceAccount(ctx, ns, "app", map[string]string{testenv.RoleAnnotation: env.RoleARN}); err != nil {
		t.Fatal(err)
	}
	elsewhere := "elsewhere-" + ns
	gone, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "gone", ServiceAccount: "app", Node: elsewhere, IP: addr(34, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	live, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "live", ServiceAccount: "app", Node: elsewhere, IP: addr(34, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	if err := env.DeletePod(ctx, ns, "gone"); err != nil {
		t.Fatal(err)
	}
	key := cache.Key{Namespace: ns, ServiceAccount: "app", RoleARN: env.RoleARN, Audience: testenv.Audience, TokenExpiration: time.Hour}
	goneRef := cache.PodRef{Namespace: ns, Name: gone.Name, UID: gone.UID}
	liveRef := cache.PodRef{Namespace: ns, Name: live.Name, UID: live.UID}

	// The deleted pod is the entry's first user: its prefetch is refused.
	h.cache.Acquire(key, goneRef)
	h.cache.WaitIdle()
	// Its live sibling arrives and asks.
	h.cache.Acquire(key, liveRef)
	h.cache.WaitIdle()
	getCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cr, err := h.cache.Get(getCtx, key, liveRef)
	if err != nil {
		t.Fatalf("the live pod's request = %v; want credentials fetched as the live pod", err)
	}
	secrets.recordServed(map[string]string{"SecretAccessKey": cr.SecretAccessKey, "Token": cr.SessionToken})
	if got, want := subject(t, cr.SessionToken), "system:serviceaccount:"+ns+":app"; got != want {
		t.Fatalf("served credentials of %s, want %s", got, want)
	}

}
