// Package chart tests the Helm chart deploy/helm/podcreds without a
// cluster: every flag of the agent binary is reachable through values and
// described by values.schema.json, the schema refuses what the binary would
// not take, and `helm lint` passes. (The rendered objects are admitted by a
// real API server in test/integration, which also compares them with
// deploy/'s kustomization.)
package chart

import (
	"bufio"
	"fmt"
	"strings"
)

// agentFlag is one flag as `podcreds agent -h` lists it.
type agentFlag struct {
	Name  string
	Type  string // Go's flag package's name for it: string, int, float, duration, value (repeatable) or "" (bool)
	Usage string
}

// deprecated flags stay accepted by the binary but are not offered as values.
func (f agentFlag) deprecated() bool { return strings.Contains(strings.ToLower(f.Usage), "deprecated") }

// parseFlagHelp reads the flag package's PrintDefaults output:
//
//	-name type
//	  	usage (default ...)
func parseFlagHelp(help string) ([]agentFlag, error) {
	var flags []agentFlag
	sc := bufio.NewScanner(strings.NewReader(help))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "  -"):
			fields := strings.Fields(line)
			f := agentFlag{Name: strings.TrimPrefix(fields[0], "-")}
			if len(fields) > 1 {
				f.Type = fields[1]
			}
			flags = append(flags, f)
		case strings.HasPrefix(line, "    \t") && len(flags) > 0:
			u := &flags[len(flags)-1].Usage
			*u = strings.TrimSpace(*u + " " + strings.TrimSpace(line))
		case strings.TrimSpace(line) == "" || strings.HasPrefix(line, "Usage of"):
		case len(flags) == 0:
			// The help's preamble (usage line, the environment note, "flags:").
		default:
			return nil, fmt.Errorf("unexpected line in the flag help: %q", line)
		}
	}
	if len(flags) == 0 {
		return nil, fmt.Errorf("no flags in the help output:\n%s", help)
	}
	return flags, nil
}

// durationPattern is what time.ParseDuration accepts (without a sign).
const durationPattern = `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$|^0$`

// schemaFor is the values.schema.json property of a flag, from its type.
func schemaFor(f agentFlag) (map[string]any, error) {
	s := map[string]any{"description": f.Usage}
	switch f.Type {
	case "":
		s["type"] = "boolean"
	case "string":
		s["type"] = "string"
	case "int", "int64", "uint", "uint64":
		s["type"] = "integer"
	case "float":
		s["type"] = "number"
	case "duration":
		s["type"], s["pattern"] = "string", durationPattern
	case "value":
		// A repeatable flag: a list (one --flag per item) or one string.
		s["type"], s["items"] = []any{"array", "string"}, map[string]any{"type": "string"}
	default:
		return nil, fmt.Errorf("flag -%s: type %q has no schema mapping yet (test/chart/flags.go)", f.Name, f.Type)
	}
	return s, nil
}
