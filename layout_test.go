package podcreds_test

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/podcreds/podcreds"

// layers declares where each product package sits (docs/architecture.md
// draws the same picture). A product package may import packages of its own
// layer or of a lower one, never of a higher one, and never the kit. A new
// product package gets a line here and a paragraph in docs/architecture.md.
var layers = map[string]int{
	"cmd/podcreds": layerBinary,
	"agent/stack":  layerAssembly,
	"agent":        layerComponent,
	"issuer":       layerComponent,
	"doctor":       layerComponent,
	"webhook":      layerComponent,
	"explain":      layerComponent,
	"roles":        layerPart,
	"podevents":    layerPart,
	"cache":        layerPart,
	"tokenreq":     layerPart,
	"kube":         layerPart,
	"oidc":         layerPart,
	"netsetup":     layerPart,
	"failure":      layerLeaf,
	"metrics":      layerLeaf,
}

const (
	layerLeaf = iota + 1
	layerPart
	layerComponent
	layerAssembly
	layerBinary
)

var layerNames = map[int]string{layerLeaf: "leaf helper", layerPart: "shared part",
	layerComponent: "component", layerAssembly: "assembly", layerBinary: "binary"}

// kit lists the trees that are not product code: the test and demo kit,
// benchmarks, tests, tools and examples. They may import anything; no
// product package may import them.
var kit = []string{"internal/testkit", "bench", "test", "hack", "examples", "docs"}

func inKit(rel string) bool {
	return slices.ContainsFunc(kit, func(k string) bool { return rel == k || strings.HasPrefix(rel, k+"/") })
}

// checkImports returns one problem per import that breaks the rules, and
// one per product package without a declared layer. graph maps a package
// (relative to the module) to its imports of other module packages.
func checkImports(graph map[string][]string, layers map[string]int) []string {
	var problems []string
	for pkg, imports := range graph {
		if inKit(pkg) || pkg == "" {
			continue
		}
		from, ok := layers[pkg]
		if !ok {
			problems = append(problems, fmt.Sprintf("package %s has no declared layer: add it to layers in layout_test.go (or to kit if it is not product code) and describe it in docs/architecture.md", pkg))
			continue
		}
		for _, imp := range imports {
			switch to, declared := layers[imp]; {
			case inKit(imp):
				problems = append(problems, fmt.Sprintf("product package %s imports %s, which is test, bench or tool code: move what it needs into a product package", pkg, imp))
			case declared && to > from:
				problems = append(problems, fmt.Sprintf("%s (%s) imports %s (%s): an arrow points up; move the shared code down or the importer up", pkg, layerNames[from], imp, layerNames[to]))
			}
		}
	}
	slices.Sort(problems)
	return problems
}

func TestCheckImportsCatchesEveryBrokenRule(t *testing.T) {
	layers := map[string]int{"agent": layerComponent, "cache": layerPart, "failure": layerLeaf, "agent/stack": layerAssembly}
	tests := []struct {
		name  string
		graph map[string][]string
		want  string // a fragment of the one problem expected; empty: none
	}{
		{"imports downward and within a layer pass", map[string][]string{"agent/stack": {"agent", "cache"}, "agent": {"cache", "failure"}, "cache": {"failure"}}, ""},
		{"the kit may import product code", map[string][]string{"internal/testkit/testenv": {"agent"}, "bench/scale": {"agent/stack"}}, ""},
		{"a product package importing the test kit fails", map[string][]string{"agent": {"internal/testkit/fakests"}}, "imports internal/testkit/fakests"},
		{"a product package importing a benchmark fails", map[string][]string{"cache": {"bench/loadgen"}}, "imports bench/loadgen"},
		{"an arrow pointing up fails", map[string][]string{"cache": {"agent"}}, "an arrow points up"},
		{"a leaf importing a part fails", map[string][]string{"failure": {"cache"}}, "an arrow points up"},
		{"an undeclared package fails and says where to declare it", map[string][]string{"issuer": {"cache"}}, "add it to layers in layout_test.go"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := checkImports(tc.graph, layers)
			switch {
			case tc.want == "" && len(got) != 0:
				t.Fatalf("problems %q, want none", got)
			case tc.want != "" && (len(got) != 1 || !strings.Contains(got[0], tc.want)):
				t.Fatalf("problems %q, want one containing %q", got, tc.want)
			}
		})
	}
}

// moduleGraph lists the module's packages and their imports of each other
// (non-test imports: tests of a product package may use the kit).
func moduleGraph(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	graph := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, ok := relative(fields[0])
		if !ok {
			continue
		}
		graph[pkg] = nil
		for _, imp := range fields[1:] {
			if rel, ok := relative(imp); ok {
				graph[pkg] = append(graph[pkg], rel)
			}
		}
	}
	if _, ok := graph["cmd/podcreds"]; !ok || len(graph) < 10 {
		t.Fatalf("go list found %d packages and not cmd/podcreds: run from the module root", len(graph))
	}
	return graph
}

func relative(path string) (string, bool) {
	if path == module {
		return "", true
	}
	rel, ok := strings.CutPrefix(path, module+"/")
	return rel, ok
}

// TestImportsPointDown holds the module to the layers above.
func TestImportsPointDown(t *testing.T) {
	for _, p := range checkImports(moduleGraph(t), layers) {
		t.Error(p)
	}
}

// TestBinaryLinksNoKit checks what the podcreds binary links, transitively.
func TestBinaryLinksNoKit(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "./cmd/podcreds").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, module+"/agent") {
		t.Fatalf("go list -deps ./cmd/podcreds does not list the agent: %q", deps)
	}
	for _, d := range deps {
		if rel, ok := relative(d); ok && inKit(rel) {
			t.Errorf("the podcreds binary links %s", d)
		}
	}
}

// TestArchitectureDocNamesEveryPackage keeps docs/architecture.md true: it
// names every product package that exists, in backquotes.
func TestArchitectureDocNamesEveryPackage(t *testing.T) {
	doc, err := os.ReadFile("docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	for pkg := range moduleGraph(t) {
		if pkg == "" || inKit(pkg) {
			continue
		}
		if !regexp.MustCompile("`" + regexp.QuoteMeta(pkg) + "/?`").Match(doc) {
			t.Errorf("docs/architecture.md does not describe package %s", pkg)
		}
	}
}
