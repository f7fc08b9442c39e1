package main

import (
	"io"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestExplainArguments(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		problem string
	}{
		{[]string{"shop/checkout"}, ""},
		{[]string{"--output=json", "--agent=127.0.0.1:8090", "shop/checkout"}, ""},
		{nil, "name exactly one pod"},
		{[]string{"checkout"}, "is not NAMESPACE/POD"},
		{[]string{"shop/a/b"}, "is not NAMESPACE/POD"},
		{[]string{"../p"}, "namespace \"..\""},
		{[]string{"shop/.."}, "pod name \"..\""},
		{[]string{"--output=yaml", "shop/p"}, "neither text nor json"},
		{[]string{"--webhook-endpoint=http://example.com/", "shop/p"}, "-webhook-endpoint"},
		{[]string{"--token-expiration=1m", "shop/p"}, "below 10m"},
	} {
		c, err := parseExplainConfig(tc.args, io.Discard)
		switch {
		case tc.problem == "" && (err != nil || c.Namespace != "shop" || c.Pod != "checkout" && c.Pod != "p"):
			t.Errorf("%v: %+v, %v", tc.args, c, err)
		case tc.problem != "" && (err == nil || !strings.Contains(err.Error(), tc.problem)):
			t.Errorf("%v: %v, want a refusal saying %q", tc.args, err, tc.problem)
		}
	}
}

// FuzzExplainTarget: whatever is typed as NAMESPACE/POD is refused or
// names a valid namespace and pod name, so the API path explain reads
// (and the agent's debug path) can address nothing else.
func FuzzExplainTarget(f *testing.F) {
	for _, s := range []string{"shop/checkout", "/", "a/", "/b", "a/b/c", "a%2Fb/c", "../x/y", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.HasPrefix(s, "-") {
			return // a flag, not a pod
		}
		c, err := parseExplainConfig([]string{s}, io.Discard)
		if err != nil {
			return
		}
		if len(validation.IsDNS1123Label(c.Namespace)) > 0 || len(validation.IsDNS1123Subdomain(c.Pod)) > 0 ||
			strings.Contains(c.Pod, "..") || strings.ContainsAny(c.Namespace+c.Pod, "/%") {
			t.Fatalf("%q parsed as %q / %q", s, c.Namespace, c.Pod)
		}
	})
}
