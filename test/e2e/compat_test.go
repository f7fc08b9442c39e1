//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
)

// refusal is botocore's message for a FULL_URI host it does not allow.
var refusal = regexp.MustCompile(`Unsupported host '[^']*'`)

// compatRow is one line of the compatibility table.
type compatRow struct{ client, version, endpoint, result string }

// compatTable collects what the clients did; safe for concurrent use.
type compatTable struct {
	mu   sync.Mutex
	list []compatRow
}

// record notes o's result for client c at endpoint e (err: what the suite
// found wrong beyond the client's own report).
func (t *compatTable) record(c client, e endpoint, o outcome, err error) {
	result := "works"
	switch {
	case err != nil:
		result = "**fails**: " + err.Error()
	case o.OK:
	case o.refused():
		result = "refused by the client before asking (`" + refusal.FindString(o.Error) + "`)"
	default:
		result = "**fails**: " + o.Error
	}
	version := o.Version
	if version == "" {
		version = "unknown"
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.list = append(t.list, compatRow{client: c.name, version: version, endpoint: e.label, result: result})
}

func (t *compatTable) rows() []compatRow {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]compatRow(nil), t.list...)
}

// writeCompat writes the table as Markdown; `make e2e` copies it into the
// README between its compat markers.
func writeCompat(path string, rows []compatRow) error {
	if len(rows) == 0 {
		return fmt.Errorf("no client ran: nothing to write to %s", path)
	}
	var b strings.Builder
	b.WriteString("<!-- Written by the e2e suite (make e2e): unmodified clients in a pod's network namespace, writing and reading an object on MinIO S3 with what podcreds served. Do not edit by hand. -->\n")
	b.WriteString("| client | version | endpoint | result |\n|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", cell(r.client), cell(r.version), r.endpoint, cell(r.result))
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// cell keeps a value from breaking the table.
func cell(s string) string {
	return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s)
}
