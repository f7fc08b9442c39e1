package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestAgentLinksNoFullKubernetesTypes keeps the Kubernetes packages that
// once made up half of the agent's resident memory out of the agent's own
// code: the agent reads pods, ServiceAccounts and namespaces through package
// kube's views, never the generated clientset, its informers or listers, nor
// the full core/v1 types.
//
// Two things are allowed, for client-go's tools/events (the agent's Events
// on pods, package podevents): tools/events itself imports the generated
// clientset package (for its adapter to the legacy core/v1 Events, which
// podcreds does not use) and so links every typed client and every API
// group's types; and podevents hands it a core/v1 ObjectReference, the type
// its recorder takes. So the clientset may be linked only because
// tools/events imports it, and core/v1 may be imported by podevents alone.
// The binary links them anyway since `podcreds issuer` uses client-go's
// tools/leaderelection; README's footprint section says what that costs the
// agent. Tests may use them freely.
func TestAgentLinksNoFullKubernetesTypes(t *testing.T) {
	agentPkgs := []string{"../../agent/...", "../../cache", "../../tokenreq", "../../kube", "../../oidc", "../../netsetup",
		"../../metrics", "../../failure", "../../podevents"}
	out, err := exec.Command("go", append([]string{"list", "-deps", "-f", "{{.ImportPath}} {{join .Imports \" \"}}"}, agentPkgs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 100 {
		t.Fatalf("go list -deps printed %d packages; expected the agent's full dependency list", len(lines))
	}
	forbidden := []string{"k8s.io/client-go/informers", "k8s.io/client-go/listers",
		"k8s.io/client-go/tools/leaderelection", "github.com/podcreds/podcreds/internal/testkit"}
	// Who may import these packages, of all the agent's dependencies.
	onlyFrom := map[string]func(importer string) bool{
		"k8s.io/client-go/kubernetes": func(p string) bool { return p == "k8s.io/client-go/tools/events" },
		"k8s.io/api/core/v1": func(p string) bool {
			return !strings.HasPrefix(p, "github.com/podcreds/podcreds") || p == "github.com/podcreds/podcreds/podevents"
		},
	}
	clientset := false
	for _, line := range lines {
		pkg, imports, _ := strings.Cut(line, " ")
		for _, f := range forbidden {
			if pkg == f || strings.HasPrefix(pkg, f+"/") {
				t.Errorf("the agent's packages link %s (forbidden prefix %s); see package kube's package comment", pkg, f)
			}
		}
		for _, imp := range strings.Fields(imports) {
			if allowed, ok := onlyFrom[imp]; ok && !allowed(pkg) {
				t.Errorf("%s imports %s; only tools/events may link the clientset, and only podevents core/v1 (see this test's comment)", pkg, imp)
			}
			clientset = clientset || imp == "k8s.io/client-go/kubernetes"
		}
	}
	if !clientset {
		t.Errorf("nothing in the agent imports k8s.io/client-go/kubernetes any more: this test's comment and README's Footprint are out of date, and the clientset can be forbidden again")
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
