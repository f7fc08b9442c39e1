package main

import (
	"cmp"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// libraryCost is what one module adds to the agent's binary: the sizes of
// its symbols (code, data, type descriptors) in a build with symbols.
type libraryCost struct {
	module string
	bytes  int64
}

// libraryCosts builds pkg with symbols (the Makefile's flags less -s -w)
// into dir and sums the sizes of the symbols the binary's file holds (code,
// read-only and initialised data; not bss, which takes no file pages) by the
// module of each symbol's package. What no symbol covers (chiefly the
// function tables, which grow with code) is shared out in proportion to each
// module's code. A running Go
// binary has nearly all of its pages resident (readBinaryMaps shows it), so
// this is also what each library costs in RSS, as file pages.
func libraryCosts(ctx context.Context, pkg, dir string) ([]libraryCost, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "podcreds-symbols")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, pkg)
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
	}
	list := exec.CommandContext(ctx, "go", "list", "-deps", "-f", "{{with .Module}}{{.Path}}{{end}}", pkg)
	list.Dir = root
	mods, err := list.Output()
	if err != nil {
		return nil, fmt.Errorf("go list -deps %s: %w", pkg, err)
	}
	f, err := elf.Open(bin)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		return nil, err
	}
	var inFile []symbol
	var fileBytes int64
	loaded := map[elf.SectionIndex]bool{}
	for i, sec := range f.Sections {
		if sec.Type == elf.SHT_PROGBITS && sec.Flags&elf.SHF_ALLOC != 0 {
			loaded[elf.SectionIndex(i)] = true
			fileBytes += int64(sec.Size)
		}
	}
	for _, s := range syms {
		if loaded[s.Section] && s.Size > 0 {
			inFile = append(inFile, symbol{s.Name, int64(s.Size), elf.ST_TYPE(s.Info) == elf.STT_FUNC})
		}
	}
	return sumByModule(inFile, fileBytes, strings.Fields(string(mods))), nil
}

// symbol is a name, its size in the binary's file, and whether it is code.
type symbol struct {
	name string
	size int64
	code bool
}

// sumByModule sums symbol sizes by the longest module path that prefixes
// each symbol's package (packages of no module are the standard library),
// and shares what is left of total out in proportion to each module's code.
func sumByModule(syms []symbol, total int64, modules []string) []libraryCost {
	modules = slices.Compact(slices.Sorted(slices.Values(modules)))
	sums, code := map[string]int64{}, map[string]int64{}
	var covered, allCode int64
	for _, s := range syms {
		m := moduleOf(s.name, modules)
		sums[m] += s.size
		covered += s.size
		if s.code {
			code[m] += s.size
			allCode += s.size
		}
	}
	if left := total - covered; left > 0 && allCode > 0 {
		for m, c := range code {
			sums[m] += left * c / allCode
		}
	}
	var out []libraryCost
	for m, b := range sums {
		out = append(out, libraryCost{m, b})
	}
	slices.SortFunc(out, func(a, b libraryCost) int { return cmp.Compare(b.bytes, a.bytes) })
	return out
}

// moduleOf names the module a symbol belongs to.
func moduleOf(sym string, modules []string) string {
	for _, p := range []string{"type:", "go:itab.", "go:", "*"} {
		sym = strings.TrimPrefix(sym, p)
	}
	sym = strings.TrimPrefix(sym, "*")
	// The package path ends at the first '.' after the last '/' that
	// comes before any method receiver or type argument.
	head := sym
	if i := strings.IndexAny(head, "(["); i >= 0 {
		head = head[:i]
	}
	pkg := head
	slash := strings.LastIndexByte(head, '/')
	if i := strings.IndexByte(head[slash+1:], '.'); i >= 0 {
		pkg = head[:slash+1+i]
	}
	best := ""
	for _, m := range modules {
		if (pkg == m || strings.HasPrefix(pkg, m+"/")) && len(m) > len(best) {
			best = m
		}
	}
	switch {
	case best != "":
		return best
	case !strings.Contains(strings.SplitN(pkg, "/", 2)[0], "."):
		return "Go runtime and standard library"
	}
	return "other"
}

// librariesTable lists the largest contributors and sums the rest.
func librariesTable(libs []libraryCost) table {
	const shown = 24
	t := table{
		Title:  "Memory: what each library adds to the agent's binary",
		Header: []string{"module", "symbols", "share"},
		Notes:  []string{"Sizes of the symbols in the binary's file (code, read-only and initialised data, type descriptors) of a build with symbols, by the module of their package; what no symbol covers (chiefly the function tables, which grow with code) is shared out in proportion to each module's code. Transitive dependencies count as their own modules. The binary's pages are nearly all resident (smaps note above), so a module's share here is its share of the file column of RSS."},
	}
	var total int64
	for _, l := range libs {
		total += l.bytes
	}
	var rest int64
	for i, l := range libs {
		if i >= shown {
			rest += l.bytes
			continue
		}
		t.Rows = append(t.Rows, []string{l.module, fmtMiB(float64(l.bytes)), fmt.Sprintf("%.1f %%", 100*float64(l.bytes)/float64(total))})
	}
	if rest > 0 {
		t.Rows = append(t.Rows, []string{fmt.Sprintf("%d other modules", len(libs)-shown), fmtMiB(float64(rest)), fmt.Sprintf("%.1f %%", 100*float64(rest)/float64(total))})
	}
	t.Rows = append(t.Rows, []string{"the binary's loaded sections", fmtMiB(float64(total)), "100 %"})
	return t
}
