package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLinksNoFullKubernetesTypes keeps the packages that once made up half
// of the agent's resident memory out of the binary: the generated clientset
// (every API group's client, registered at start-up) and the full core/v1
// types. package kube and its views replace them; tests may still use both.
func TestLinksNoFullKubernetesTypes(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 100 {
		t.Fatalf("go list -deps printed %d packages; expected the agent's full dependency list", len(deps))
	}
	forbidden := []string{"k8s.io/client-go/kubernetes", "k8s.io/client-go/informers", "k8s.io/api/core/v1",
		"github.com/podcreds/podcreds/internal/testkit/kubeclientset"}
	for _, d := range deps {
		for _, f := range forbidden {
			if d == f || strings.HasPrefix(d, f+"/") {
				t.Errorf("the agent links %s (forbidden prefix %s); see package kube's package comment", d, f)
			}
		}
	}
}
