package testenv

import "fmt"

// Tool returns the path of a tool `make deploy-tools` builds into
// .tools/bin (helm, promtool), found as the control plane's binaries are: in
// $PODCREDS_TOOLS_BIN, else in the checkout's .tools/bin. The error says how
// to build it; a test that needs the tool fails with it rather than skipping.
func Tool(name string) (string, error) {
	p, err := findBinary(name)
	if err != nil {
		return "", fmt.Errorf("%s is not built: run `make deploy-tools` in the checkout (`make test` does it for you): %w", name, err)
	}
	return p, nil
}
