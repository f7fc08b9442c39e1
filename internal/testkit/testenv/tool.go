package testenv

import (
	"errors"
	"strings"
)

// Tool returns the path of a tool `make deploy-tools` builds into
// .tools/bin (helm, promtool), found as the control plane's binaries are: in
// $PODCREDS_TOOLS_BIN, else in the checkout's .tools/bin. The error says how
// to build it; a test that needs the tool fails with it rather than skipping.
func Tool(name string) (string, error) {
	p, err := findBinary(name)
	if err != nil {
		// findBinary names the target that builds the control plane.
		return "", errors.New(strings.Replace(err.Error(), "`make tools`", "`make deploy-tools`", 1))
	}
	return p, nil
}
