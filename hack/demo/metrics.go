package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// showMetrics scrapes url once and prints the samples of the named metric
// families, saying so when a family has none.
func showMetrics(ctx context.Context, u *ui, url string, families ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("scrape the agent's metrics: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("scrape the agent's metrics: %s answered %s", url, res.Status)
	}
	found := map[string]bool{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		for _, f := range families {
			// A sample line is the name, then labels or a space.
			if rest, ok := strings.CutPrefix(line, f); ok && (strings.HasPrefix(rest, "{") || strings.HasPrefix(rest, " ")) {
				u.line("      ", line)
				found[f] = true
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read the agent's metrics: %w", err)
	}
	for _, f := range families {
		if !found[f] {
			u.line("      ", "(no samples of "+f+")")
		}
	}
	return nil
}
