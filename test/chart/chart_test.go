package chart

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/podcreds/podcreds/internal/testkit/testenv"
)

const (
	chartDir   = "../../deploy/helm/podcreds"
	schemaFile = chartDir + "/values.schema.json"
)

var update = flag.Bool("update", false, "rewrite values.schema.json's agent flags from `podcreds agent -h` (make chart-flags)")

// podcreds is the agent binary built from this checkout; helm the pinned helm.
var podcreds, helm string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "podcreds-chart-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	podcreds = filepath.Join(dir, "podcreds")
	if out, err := exec.Command("go", "build", "-o", podcreds, "../../cmd/podcreds").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building podcreds: %v\n%s", err, out)
		os.Exit(1)
	}
	if helm, err = testenv.Tool("helm"); err != nil {
		fmt.Fprintf(os.Stderr, "test/chart: FAIL: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// binaryFlags runs `podcreds agent -h`: the flags are the binary's, never a
// list kept by hand, so a flag added or renamed in cmd/podcreds shows up here.
func binaryFlags(t *testing.T) []agentFlag {
	t.Helper()
	out, err := exec.Command(podcreds, "agent", "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("podcreds agent -h: %v\n%s", err, out)
	}
	flags, err := parseFlagHelp(string(out))
	if err != nil {
		t.Fatal(err)
	}
	return flags
}

// wantFlagSchema is the agent.flags part of the schema the binary calls for.
func wantFlagSchema(t *testing.T) map[string]any {
	t.Helper()
	props := map[string]any{}
	for _, f := range binaryFlags(t) {
		if f.deprecated() {
			continue
		}
		s, err := schemaFor(f)
		if err != nil {
			t.Fatal(err)
		}
		props[f.Name] = s
	}
	// Through JSON, so it compares equal to what is read from the file.
	var out map[string]any
	roundTrip(t, props, &out)
	return out
}

func roundTrip(t *testing.T, in, out any) {
	t.Helper()
	js, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, out); err != nil {
		t.Fatal(err)
	}
}

func readSchema(t *testing.T) (schema, flagProps map[string]any) {
	t.Helper()
	raw, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatalf("%s: %v", schemaFile, err)
	}
	agent := schema["properties"].(map[string]any)["agent"].(map[string]any)
	flags := agent["properties"].(map[string]any)["flags"].(map[string]any)
	props, _ := flags["properties"].(map[string]any)
	if flags["additionalProperties"] != false {
		t.Fatalf("%s: agent.flags must refuse flags the binary does not have (additionalProperties: false)", schemaFile)
	}
	return schema, props
}

// TestSchemaHasEveryAgentFlag: values.schema.json offers exactly the flags
// `podcreds agent -h` lists (deprecated aliases left out), each with the
// type the binary parses. With -update it rewrites them.
func TestSchemaHasEveryAgentFlag(t *testing.T) {
	want := wantFlagSchema(t)
	schema, got := readSchema(t)
	if *update {
		schema["properties"].(map[string]any)["agent"].(map[string]any)["properties"].(map[string]any)["flags"].(map[string]any)["properties"] = want
		js, err := json.MarshalIndent(schema, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(schemaFile, append(js, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	var problems []string
	for name, w := range want {
		if g, ok := got[name]; !ok {
			problems = append(problems, fmt.Sprintf("the binary has --%s, values.schema.json does not", name))
		} else if !reflect.DeepEqual(g, w) {
			problems = append(problems, fmt.Sprintf("--%s: schema %v, the binary calls for %v", name, g, w))
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			problems = append(problems, fmt.Sprintf("values.schema.json offers --%s, which the binary no longer has (or deprecates)", name))
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		t.Fatalf("the chart's flags drifted from `podcreds agent -h`; run `make chart-flags`:\n  %s", strings.Join(problems, "\n  "))
	}
}

// helmTemplate renders the chart with the given values files and --set
// arguments and returns helm's output or its error with what it said.
func helmTemplate(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helm, append([]string{"template", "podcreds", chartDir, "--namespace", "podcreds-system"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("helm template %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// sampleValue is a value of the flag's type, distinct per flag, and the
// arguments it must render to.
func sampleValue(f agentFlag, i int) (any, []string) {
	switch f.Type {
	case "":
		return true, []string{"--" + f.Name}
	case "int", "int64", "uint", "uint64":
		return 1000000 + i, []string{fmt.Sprintf("--%s=%d", f.Name, 1000000+i)}
	case "float":
		return 0.25 + float64(i), []string{fmt.Sprintf("--%s=%v", f.Name, 0.25+float64(i))}
	case "duration":
		return fmt.Sprintf("%ds", 60+i), []string{fmt.Sprintf("--%s=%ds", f.Name, 60+i)}
	case "value":
		a, b := fmt.Sprintf("a-%s", f.Name), fmt.Sprintf("b-%s", f.Name)
		return []string{a, b}, []string{"--" + f.Name + "=" + a, "--" + f.Name + "=" + b}
	default:
		v := "v-" + f.Name
		return v, []string{"--" + f.Name + "=" + v}
	}
}

// agentArgs returns the agent container's args from rendered manifests.
func agentArgs(t *testing.T, manifests string) []string {
	t.Helper()
	objs := decodeAll(t, manifests)
	for _, o := range objs {
		if o["kind"] != "DaemonSet" {
			continue
		}
		var ds struct {
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct {
							Name string   `json:"name"`
							Args []string `json:"args"`
						} `json:"containers"`
					} `json:"spec"`
				} `json:"template"`
			} `json:"spec"`
		}
		roundTrip(t, o, &ds)
		for _, c := range ds.Spec.Template.Spec.Containers {
			if c.Name == "agent" {
				return c.Args
			}
		}
	}
	t.Fatalf("no DaemonSet with an agent container in:\n%s", manifests)
	return nil
}

// TestEveryAgentFlagReachesTheBinary sets every flag of `podcreds agent -h`
// through values at once and checks the DaemonSet passes each, once, in
// the form the binary parses, and that the binary's flag parser takes them.
func TestEveryAgentFlagReachesTheBinary(t *testing.T) {
	flags := map[string]any{}
	want := []string{}
	for i, f := range binaryFlags(t) {
		if f.deprecated() {
			continue
		}
		v, args := sampleValue(f, i)
		flags[f.Name] = v
		want = append(want, args...)
	}
	values := writeValues(t, map[string]any{"agent": map[string]any{"flags": flags}})
	out, err := helmTemplate(t, "-f", values)
	if err != nil {
		t.Fatal(err)
	}
	got := agentArgs(t, out)
	if len(got) == 0 || got[0] != "agent" {
		t.Fatalf("args %q do not start with the agent subcommand", got)
	}
	slices.Sort(want)
	if rest := slices.Sorted(slices.Values(got[1:])); !slices.Equal(rest, want) {
		t.Fatalf("rendered args\n  %q\nwant\n  %q", rest, want)
	}

	// The binary parses them: it fails validation (the samples are not
	// meaningful addresses), never with a flag syntax error.
	res, _ := exec.Command(podcreds, got...).CombinedOutput()
	for _, parseErr := range []string{"flag provided but not defined", "invalid value", "invalid boolean", "bad flag syntax"} {
		if bytes.Contains(res, []byte(parseErr)) {
			t.Fatalf("podcreds refused the rendered flags' syntax (%s):\n%s", parseErr, res)
		}
	}
	if !bytes.Contains(res, []byte("problems with the configuration")) {
		t.Fatalf("podcreds with sample flags should stop at validation, said:\n%s", res)
	}

	t.Run("false renders --flag=false and an empty list renders nothing", func(t *testing.T) {
		out, err := helmTemplate(t, "--set", "agent.flags.link-setup=false", "--set-json", "agent.flags.imds-listen=[]")
		if err != nil {
			t.Fatal(err)
		}
		if got := agentArgs(t, out); !slices.Equal(got, []string{"agent", "--health-socket=/run/podcreds/health.sock", "--imds-key-file=/var/lib/podcreds/imds-token.key", "--link-setup=false", "--log-format=json", "--startup-taint=podcreds.io/agent-not-ready"}) {
			t.Fatalf("args %q", got)
		}
	})
}

// TestSchemaRefuses: the schema turns away what the binary would refuse at
// start-up on every node, at `helm install` time instead.
func TestSchemaRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  []string
		say  string
	}{
		{"a flag the agent does not have", []string{"--set", "agent.flags.no-such-flag=1"}, "no-such-flag"},
		{"a number flag given a word", []string{"--set", "agent.flags.rate-limit=fast"}, "rate-limit"},
		{"a duration that Go cannot parse", []string{"--set", "agent.flags.token-expiration=1 hour"}, "token-expiration"},
		{"a boolean flag given a word", []string{"--set", "agent.flags.link-setup=yes please"}, "link-setup"},
		{"a misspelt top-level value", []string{"--set", "serviceMonitor.enable=true"}, "enable"},
		{"a capability beyond the two the agent uses", []string{"--set-json", `agent.capabilities=["SYS_ADMIN"]`}, "capabilities"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := helmTemplate(t, tc.set...)
			if err == nil || !strings.Contains(err.Error(), "schema") || !strings.Contains(err.Error(), tc.say) {
				t.Fatalf("helm template %q: %v; want a schema error naming %s", tc.set, err, tc.say)
			}
		})
	}
}

// TestHelmLint lints the chart with its default values and with
// ci/all-features.yaml, strictly (warnings fail).
func TestHelmLint(t *testing.T) {
	for _, values := range []string{"", filepath.Join(chartDir, "ci", "all-features.yaml")} {
		args := []string{"lint", "--strict", chartDir}
		if values != "" {
			args = append(args, "-f", values)
		}
		out, err := exec.Command(helm, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

func writeValues(t *testing.T, v map[string]any) string {
	t.Helper()
	js, err := json.Marshal(v) // JSON is YAML
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(p, js, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestProbesAskTheAgentsOwnSocket: both probes run `podcreds probe` against
// the socket the agent serves (--health-socket), never the health port two
// agents share during a surge; a socket moved by value is followed.
func TestProbesAskTheAgentsOwnSocket(t *testing.T) {
	for _, tc := range []struct {
		set  []string
		want string // the -socket argument; "" for the binary's default
	}{
		{nil, ""},
		{[]string{"--set", "agent.flags.health-socket=/run/podcreds/other.sock"}, "-socket=/run/podcreds/other.sock"},
	} {
		out, err := helmTemplate(t, tc.set...)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, o := range decodeAll(t, out) {
			if o["kind"] != "DaemonSet" {
				continue
			}
			found = true
			var ds struct {
				Spec struct {
					Template struct {
						Spec struct {
							Containers []struct {
								ReadinessProbe, LivenessProbe struct {
									Exec struct {
										Command []string `json:"command"`
									} `json:"exec"`
								}
							} `json:"containers"`
						} `json:"spec"`
					} `json:"template"`
				} `json:"spec"`
			}
			roundTrip(t, o, &ds)
			c := ds.Spec.Template.Spec.Containers[0]
			for name, p := range map[string][]string{"readiness": c.ReadinessProbe.Exec.Command, "liveness": c.LivenessProbe.Exec.Command} {
				want := []string{"/podcreds", "probe"}
				if len(p) < 3 || !slices.Equal(p[:2], want) {
					t.Errorf("with %q the %s probe runs %q, want podcreds probe", tc.set, name, p)
					continue
				}
				got := ""
				if len(p) == 4 {
					got = p[3]
				}
				if got != tc.want {
					t.Errorf("with %q the %s probe's socket argument is %q, want %q", tc.set, name, got, tc.want)
				}
			}
		}
		if !found {
			t.Fatal("no DaemonSet rendered")
		}
	}
}
