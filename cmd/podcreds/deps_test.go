package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestAgentLinksNoFullKubernetesTypes keeps the packages that once made up
// half of the agent's resident memory out of the agent's own code: the
// generated clientset (every API group's client, registered at start-up),
// its informers and the full core/v1 types. package kube and its views
// replace them.
//
// The binary as a whole does link them since `podcreds issuer` uses
// client-go's tools/leaderelection, which imports the clientset and the
// informers (for coordinated leader election). Their package initialisers
// run in every subcommand; README's footprint section says what that costs
// the agent. Tests may use both freely.
func TestAgentLinksNoFullKubernetesTypes(t *testing.T) {
	agentPkgs := []string{"../../agent/...", "../../cache", "../../tokenreq", "../../kube", "../../oidc", "../../netsetup", "../../metrics", "../../failure"}
	out, err := exec.Command("go", append([]string{"list", "-deps"}, agentPkgs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 100 {
		t.Fatalf("go list -deps printed %d packages; expected the agent's full dependency list", len(deps))
	}
	forbidden := []string{"k8s.io/client-go/kubernetes", "k8s.io/client-go/informers", "k8s.io/api/core/v1",
		"k8s.io/client-go/tools/leaderelection", "github.com/podcreds/podcreds/internal/testkit"}
	for _, d := range deps {
		for _, f := range forbidden {
			if d == f || strings.HasPrefix(d, f+"/") {
				t.Errorf("the agent's packages link %s (forbidden prefix %s); see package kube's package comment", d, f)
			}
		}
	}
}

// TestBinaryLinksNoTestKit keeps the test and demo kit out of the binary.
func TestBinaryLinksNoTestKit(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 100 {
		t.Fatalf("go list -deps printed %d packages; expected the binary's full dependency list", len(deps))
	}
	for _, d := range deps {
		if strings.HasPrefix(d, "github.com/podcreds/podcreds/internal/testkit") {
			t.Errorf("the binary links the test kit package %s", d)
		}
	}
}
