// Package docs holds no code: its test keeps troubleshooting.md true of the
// refusals the product code can answer.
package docs

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// refusal is one place in the product code that builds a refusal.
type refusal struct {
	code   string
	status int
	at     string // file:line
}

// productDirs are the packages whose refusals reach clients; the test kit,
// benchmarks, tools and tests are not product code.
var productDirs = []string{"agent", "roles", "cache", "failure", "tokenreq", "oidc", "kube", "netsetup", "metrics", "cmd"}

// TestEveryRefusalCodeIsInTheTroubleshootingGuide reads every refusal the
// product code builds (calls of failure.Final and failure.Retriable, the STS
// classes, literal failure.Error values) and checks that each code has one
// status everywhere, a row in troubleshooting.md with that status, and an
// entry in a package's testdata/refusals.golden.
func TestEveryRefusalCodeIsInTheTroubleshootingGuide(t *testing.T) {
	refusals := scanRefusals(t, "..")
	byCode := map[string][]refusal{}
	for _, r := range refusals {
		byCode[r.code] = append(byCode[r.code], r)
	}
	// A floor, so a scanner that stops seeing refusals fails instead of
	// passing on nothing (the code had 40 codes when this was written).
	if len(byCode) < 35 {
		t.Fatalf("found only %d refusal codes in the product code: the scanner is broken", len(byCode))
	}

	doc, err := os.ReadFile("troubleshooting.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{} // code -> its table row
	for _, line := range strings.Split(string(doc), "\n") {
		if m := rowRE.FindStringSubmatch(line); m != nil {
			rows[m[1]] = line
		}
	}
	goldens := readGoldens(t, "..")

	for _, code := range slices.Sorted(mapKeys(byCode)) {
		sites := byCode[code]
		status := sites[0].status
		for _, s := range sites[1:] {
			if s.status != status {
				t.Errorf("code %s is answered with %d at %s and %d at %s: one code, one status", code, status, sites[0].at, s.status, s.at)
			}
		}
		row, ok := rows[code]
		switch {
		case !ok:
			t.Errorf("code %s (%d, %s) has no row in docs/troubleshooting.md", code, status, sites[0].at)
		case !strings.Contains(row, "| "+strconv.Itoa(status)+" |"):
			t.Errorf("docs/troubleshooting.md's row for %s does not give its status %d: %s", code, status, row)
		}
		if !goldens[code] {
			t.Errorf("code %s (%s) has no entry in any testdata/refusals.golden", code, sites[0].at)
		}
	}
	for code := range rows {
		if _, ok := byCode[code]; !ok {
			t.Errorf("docs/troubleshooting.md documents %s, which no product code answers", code)
		}
	}
}

// rowRE matches a table row that documents a code: | `Code` | status | ...
var rowRE = regexp.MustCompile("^\\| `([A-Za-z]+)` \\|")

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// scanRefusals parses the product packages under root.
func scanRefusals(t *testing.T, root string) []refusal {
	t.Helper()
	var out []refusal
	for _, dir := range productDirs {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && d.Name() == "testdata" {
				return filepath.SkipDir
			}
			if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			out = append(out, scanFile(t, path)...)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func scanFile(t *testing.T, path string) []refusal {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	inFailure := f.Name.Name == "failure"
	consts := stringConsts(f)
	var out []refusal
	at := func(n ast.Node) string { p := fset.Position(n.Pos()); return p.Filename + ":" + strconv.Itoa(p.Line) }
	// codeOf reads a code argument: a string literal or constant is a code;
	// x.Code / x.code re-uses a code already counted where x was built.
	codeOf := func(e ast.Expr) (string, bool) {
		switch e := e.(type) {
		case *ast.BasicLit:
			s, err := strconv.Unquote(e.Value)
			return s, err == nil
		case *ast.Ident:
			if s, ok := consts[e.Name]; ok {
				return s, true
			}
		case *ast.SelectorExpr:
			if e.Sel.Name == "Code" || e.Sel.Name == "code" {
				return "", true
			}
		}
		t.Errorf("%s: cannot read the refusal code %s; use a string literal or constant", at(e), exprString(e))
		return "", false
	}
	add := func(n ast.Node, codeExpr, statusExpr ast.Expr) {
		if code, ok := codeOf(codeExpr); ok && code != "" {
			status := http.StatusServiceUnavailable // Retriable's
			if statusExpr != nil {
				status = statusOf(t, at(n), statusExpr)
			}
			out = append(out, refusal{code: code, status: status, at: at(n)})
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr:
			switch name := calleeName(n.Fun, inFailure); name {
			case "Final":
				if len(n.Args) >= 2 {
					add(n, n.Args[1], n.Args[0])
				}
			case "Retriable":
				if len(n.Args) >= 1 {
					add(n, n.Args[0], nil)
				}
			}
		case *ast.CompositeLit:
			switch typeName(n.Type, inFailure) {
			case "stsClass":
				if len(n.Elts) >= 2 {
					add(n, n.Elts[1], n.Elts[0])
				}
			case "Error":
				var code, status ast.Expr
				for _, e := range n.Elts {
					if kv, ok := e.(*ast.KeyValueExpr); ok {
						switch kv.Key.(*ast.Ident).Name {
						case "Code":
							code = kv.Value
						case "Status":
							status = kv.Value
						}
					}
				}
				if id, ok := code.(*ast.Ident); ok && inFailure && consts[id.Name] == "" {
					break // the generic constructors themselves, building from their parameters
				}
				if code != nil && status != nil {
					add(n, code, status)
				}
			}
		}
		return true
	})
	return out
}

// calleeName is "Final" or "Retriable" for failure.Final / failure.Retriable
// (or the bare names inside package failure), else "".
func calleeName(fun ast.Expr, inFailure bool) string {
	switch f := fun.(type) {
	case *ast.SelectorExpr:
		if x, ok := f.X.(*ast.Ident); ok && x.Name == "failure" {
			return f.Sel.Name
		}
	case *ast.Ident:
		if inFailure {
			return f.Name
		}
	}
	return ""
}

func typeName(e ast.Expr, inFailure bool) string {
	switch e := e.(type) {
	case *ast.Ident:
		if e.Name == "stsClass" || inFailure {
			return e.Name
		}
	case *ast.SelectorExpr:
		if x, ok := e.X.(*ast.Ident); ok && x.Name == "failure" {
			return e.Sel.Name
		}
	}
	return ""
}

// statusOf reads a status: an integer literal or http.StatusX.
func statusOf(t *testing.T, at string, e ast.Expr) int {
	switch e := e.(type) {
	case *ast.BasicLit:
		if n, err := strconv.Atoi(e.Value); err == nil {
			return n
		}
	case *ast.SelectorExpr:
		if x, ok := e.X.(*ast.Ident); ok && x.Name == "http" {
			if n, ok := httpStatus[e.Sel.Name]; ok {
				return n
			}
		}
	}
	t.Errorf("%s: cannot read the status %s; use a literal or an http.Status constant", at, exprString(e))
	return 0
}

var httpStatus = map[string]int{
	"StatusBadRequest": 400, "StatusUnauthorized": 401, "StatusForbidden": 403, "StatusNotFound": 404,
	"StatusMethodNotAllowed": 405, "StatusConflict": 409, "StatusTooManyRequests": 429,
	"StatusRequestHeaderFieldsTooLarge": 431, "StatusInternalServerError": 500, "StatusServiceUnavailable": 503,
}

// stringConsts maps a file's top-level string constants to their values.
func stringConsts(f *ast.File) map[string]string {
	m := map[string]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if i < len(vs.Values) {
					if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						m[name.Name], _ = strconv.Unquote(lit.Value)
					}
				}
			}
		}
	}
	return m
}

func exprString(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return exprString(e.X) + "." + e.Sel.Name
	}
	return "an expression"
}

// readGoldens returns every code that has an entry in some package's
// testdata/refusals.golden.
func readGoldens(t *testing.T, root string) map[string]bool {
	t.Helper()
	codes := map[string]bool{}
	files := 0
	for _, dir := range productDirs {
		_ = filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "refusals.golden" {
				return nil
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			files++
			for _, m := range goldenStatusRE.FindAllStringSubmatch(string(b), -1) {
				codes[m[1]] = true
			}
			return nil
		})
	}
	if files == 0 {
		t.Fatal("no testdata/refusals.golden found")
	}
	return codes
}

// goldenStatusRE matches a golden entry's status line: "404 PodNotFound".
var goldenStatusRE = regexp.MustCompile(`(?m)^\d{3} ([A-Za-z]+)$`)
