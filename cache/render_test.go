package cache

import (
	"context"
	"encoding/json"
	"maps"
	"regexp"
	"slices"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"
)

func TestRenderedBodies(t *testing.T) {
	// Issued and expiration in a non-UTC zone with fractions of a second:
	// the bodies must carry UTC with whole seconds, rounded down.
	berlin := time.FixedZone("CET", 3600)
	issued := time.Date(2026, 1, 2, 10, 4, 50, 999_000_000, berlin)
	expiration := issued.Add(time.Hour)
	cr := NewCredentials("ASIAEXAMPLE", "s3cr3t/+=", "FwoGZXIvYXdzE<&>", "123456789012", issued, expiration)

	tests := []struct {
		name string
		body []byte
		want map[string]string
	}{
		{
			name: "the container body has exactly the fields SDKs read",
			body: cr.ContainerBody(),
			want: map[string]string{
				"AccessKeyId":     "ASIAEXAMPLE",
				"SecretAccessKey": "s3cr3t/+=",
				"Token":           "FwoGZXIvYXdzE<&>",
				"Expiration":      "2026-01-02T10:04:50Z",
				"AccountId":       "123456789012",
			},
		},
		{
			name: "the IMDS body has exactly the fields SDKs read",
			body: cr.IMDSBody(),
			want: map[string]string{
				"Code":            "Success",
				"LastUpdated":     "2026-01-02T09:04:50Z",
				"Type":            "AWS-HMAC",
				"AccessKeyId":     "ASIAEXAMPLE",
				"SecretAccessKey": "s3cr3t/+=",
				"Token":           "FwoGZXIvYXdzE<&>",
				"Expiration":      "2026-01-02T10:04:50Z",
			},
		},
	}
	rfc3339Seconds := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got map[string]string
			if err := json.Unmarshal(tt.body, &got); err != nil {
				t.Fatalf("body %s does not decode into strings: %v", tt.body, err)
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("fields %v, want %v", got, tt.want)
			}
			if exp := got["Expiration"]; !rfc3339Seconds.MatchString(exp) {
				t.Errorf("Expiration %q is not RFC 3339 UTC with whole seconds", exp)
			}
			if p, err := time.Parse(time.RFC3339, got["Expiration"]); err != nil || p.After(expiration) {
				t.Errorf("Expiration parses to %v (%v), want no later than %v", p, err, expiration)
			}
		})
	}

	t.Run("the container body leaves out an unknown account", func(t *testing.T) {
		var got map[string]string
		noAccount := NewCredentials("A", "S", "T", "", issued, expiration)
		if err := json.Unmarshal(noAccount.ContainerBody(), &got); err != nil {
			t.Fatal(err)
		}
		if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, []string{"AccessKeyId", "Expiration", "SecretAccessKey", "Token"}) {
			t.Errorf("fields %v, want no AccountId", keys)
		}
	})
}

func TestStoredCredentialsAreRendered(t *testing.T) {
	clk := testingclock.NewFakeClock(t0)
	expiration := t0.Add(time.Hour)
	// A fetcher that builds credentials by hand, without bodies or Issued,
	// and hands out the same value every time.
	raw := &Credentials{AccessKeyID: "A", SecretAccessKey: "S", SessionToken: "T", Expiration: expiration}
	c := New(FetcherFunc(func(ctx context.Context, key Key, pod PodRef) (*Credentials, error) {
		return raw, nil
	}), Options{Clock: clk})
	defer c.Close()
	c.Acquire(testKey(1), testPod(1))
	c.WaitIdle()

	cr, err := c.Get(context.Background(), testKey(1), testPod(1))
	if err != nil {
		t.Fatal(err)
	}
	if raw.ContainerBody() != nil || raw.IMDSBody() != nil || !raw.Issued.IsZero() {
		t.Error("the cache modified the fetcher's credentials")
	}
	want := NewCredentials("A", "S", "T", "", t0, expiration)
	if string(cr.ContainerBody()) != string(want.ContainerBody()) || string(cr.IMDSBody()) != string(want.IMDSBody()) {
		t.Errorf("stored bodies\n%s\n%s\nwant\n%s\n%s", cr.ContainerBody(), cr.IMDSBody(), want.ContainerBody(), want.IMDSBody())
	}
}
