package cache

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/podcreds/podcreds/failure"
)

func TestStateShowsTheEntryWithoutItsSecrets(t *testing.T) {
	key := Key{Namespace: "ns", ServiceAccount: "sa", RoleARN: "arn:aws:iam::111111111111:role/app"}
	pod := PodRef{Namespace: "ns", Name: "p", UID: "u1"}
	var fail error
	c := New(FetcherFunc(func(context.Context, Key, PodRef) (*Credentials, error) {
		if fail != nil {
			return nil, fail
		}
		now := time.Now()
		return NewCredentials("AKID", "SECRET", "TOKEN", "111111111111", now, now.Add(time.Hour)), nil
	}), Options{FinalErrorTTL: time.Hour})
	defer c.Close()
	if _, ok := c.State(key); ok {
		t.Fatal("a state for a key never asked for")
	}
	c.Acquire(key, pod)
	if _, err := c.Get(context.Background(), key, pod); err != nil {
		t.Fatal(err)
	}
	s, ok := c.State(key)
	if !ok || !s.Cached || s.Users != 1 || s.Expiration.Before(time.Now().Add(50*time.Minute)) || s.NextRefresh.IsZero() ||
		!s.NextRefresh.Before(s.Expiration) || s.LastError != "" {
		t.Fatalf("state %+v, want cached credentials with a refresh before they expire", s)
	}
	c.Release(key, pod.UID)

	other := key
	other.RoleARN = "arn:aws:iam::111111111111:role/denied"
	fail = failure.Final(http.StatusForbidden, "AccessDenied", "STS refused role x", nil)
	c.Acquire(other, pod)
	if _, err := c.Get(context.Background(), other, pod); err == nil {
		t.Fatal("no error")
	}
	s, _ = c.State(other)
	if s.Cached || s.LastErrorCode != "AccessDenied" || s.LastError != "STS refused role x" {
		t.Fatalf("state %+v, want the final error", s)
	}
}
