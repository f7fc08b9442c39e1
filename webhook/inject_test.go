package webhook

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
)

var testSettings = Settings{Endpoint: "/v1/credentials", TokenAudience: "podcreds", TokenExpiration: time.Hour}

// apply runs plan on podJSON and applies its patch with a JSONPatch library
// (as the API server does), returning the patched pod and the op count.
func apply(t *testing.T, podJSON string, s Settings) (map[string]any, int, []string) {
	t.Helper()
	var pod podView
	if err := json.Unmarshal([]byte(podJSON), &pod); err != nil {
		t.Fatal(err)
	}
	ops, warnings, err := plan(&pod, s)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	out := []byte(podJSON)
	if len(ops) > 0 {
		raw, _ := json.Marshal(ops)
		p, err := jsonpatch.DecodePatch(raw)
		if err != nil {
			t.Fatal(err)
		}
		if out, err = p.Apply(out); err != nil {
			t.Fatalf("patch %s does not apply: %v", raw, err)
		}
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	return m, len(ops), warnings
}

func containers(m map[string]any, list string) []map[string]any {
	spec := m["spec"].(map[string]any)
	raw, _ := spec[list].([]any)
	var out []map[string]any
	for _, c := range raw {
		out = append(out, c.(map[string]any))
	}
	return out
}

func envOf(c map[string]any) map[string]string {
	out := map[string]string{}
	raw, _ := c["env"].([]any)
	for _, e := range raw {
		e := e.(map[string]any)
		v, _ := e["value"].(string)
		out[e["name"].(string)] = v
	}
	return out
}

func mountedToken(c map[string]any) bool {
	raw, _ := c["volumeMounts"].([]any)
	for _, m := range raw {
		m := m.(map[string]any)
		if m["name"] == VolumeName {
			return m["mountPath"] == MountDir && m["readOnly"] == true
		}
	}
	return false
}

const fullPod = `{"metadata":{"name":"p","namespace":"ns"},"spec":{"serviceAccountName":"app",
 "initContainers":[{"name":"init","image":"i"}],
 "containers":[{"name":"a","image":"i","env":[{"name":"KEEP","value":"1"}],"volumeMounts":[{"name":"data","mountPath":"/data"}]},
               {"name":"b","image":"i"}],
 "ephemeralContainers":[{"name":"debug","image":"i"}],
 "volumes":[{"name":"data","emptyDir":{}}],"unknownField":{"kept":true}}}`

func TestPlanInjectsEveryContainerAndInitContainer(t *testing.T) {
	m, _, warnings := apply(t, fullPod, Settings{Endpoint: "/v1/credentials", TokenAudience: "podcreds", TokenExpiration: 2 * time.Hour, Region: "eu-west-1"})
	if len(warnings) != 0 {
		t.Errorf("warnings: %v", warnings)
	}
	want := map[string]string{EnvRelativeURI: "/v1/credentials", EnvTokenFile: TokenFile, "AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-1"}
	for _, list := range []string{"initContainers", "containers"} {
		for _, c := range containers(m, list) {
			env := envOf(c)
			for k, v := range want {
				if env[k] != v {
					t.Errorf("%s %s: %s=%q, want %q (env %v)", list, c["name"], k, env[k], v, env)
				}
			}
			if !mountedToken(c) {
				t.Errorf("%s %s does not mount the token read-only at %s: %v", list, c["name"], MountDir, c["volumeMounts"])
			}
		}
	}
	if env := envOf(containers(m, "containers")[0]); env["KEEP"] != "1" {
		t.Errorf("a container's own variable was lost: %v", env)
	}
	if c := containers(m, "ephemeralContainers")[0]; c["env"] != nil || c["volumeMounts"] != nil {
		t.Errorf("an ephemeral container was changed: %v", c)
	}
	if m["spec"].(map[string]any)["unknownField"] == nil {
		t.Error("a field the webhook does not know was lost")
	}
	vols := m["spec"].(map[string]any)["volumes"].([]any)
	if len(vols) != 2 {
		t.Fatalf("volumes %v", vols)
	}
	b, _ := json.Marshal(vols[1])
	if got := string(b); got != `{"name":"podcreds-token","projected":{"sources":[{"serviceAccountToken":{"audience":"podcreds","expirationSeconds":7200,"path":"token"}}]}}` {
		t.Errorf("token volume %s", got)
	}
}

func TestPlanIsIdempotent(t *testing.T) {
	first, n, _ := apply(t, fullPod, testSettings)
	if n == 0 {
		t.Fatal("nothing injected")
	}
	b, _ := json.Marshal(first)
	if _, n, _ := apply(t, string(b), testSettings); n != 0 {
		t.Errorf("a second invocation patched %d more operations", n)
	}
}

func TestPlanPatchIsSmall(t *testing.T) {
	// A pod with no env, mounts or volumes: one op per array created.
	var pod podView
	_ = json.Unmarshal([]byte(`{"spec":{"containers":[{"name":"a"}]}}`), &pod)
	ops, _, _ := plan(&pod, testSettings)
	var paths []string
	for _, o := range ops {
		paths = append(paths, o.Op+" "+o.Path)
	}
	if got := strings.Join(paths, ", "); got != "add /spec/containers/0/env, add /spec/containers/0/volumeMounts, add /spec/volumes" {
		t.Errorf("ops: %s", got)
	}
}

func TestPlanLeavesAlone(t *testing.T) {
	for _, tc := range []struct{ name, pod string }{
		{"a container that sets its own keys", `{"spec":{"containers":[{"name":"a","env":[{"name":"AWS_ACCESS_KEY_ID","value":"x"}]}]}}`},
		{"a container that uses IRSA", `{"spec":{"containers":[{"name":"a","env":[{"name":"AWS_WEB_IDENTITY_TOKEN_FILE","value":"/t"},{"name":"AWS_ROLE_ARN","value":"r"}]}]}}`},
		{"a container that picks a profile", `{"spec":{"containers":[{"name":"a","env":[{"name":"AWS_PROFILE","value":"dev"}]}]}}`},
		{"a container with its own endpoint", `{"spec":{"containers":[{"name":"a","env":[{"name":"AWS_CONTAINER_CREDENTIALS_FULL_URI","value":"http://127.0.0.1/x"}]}]}}`},
		{"a skipped container", `{"metadata":{"annotations":{"podcreds.io/skip-containers":" a , b"}},"spec":{"containers":[{"name":"a"},{"name":"b"}]}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, n, _ := apply(t, tc.pod, testSettings)
			if n != 0 {
				t.Errorf("patched %d operations: %v", n, m)
			}
		})
	}
}

func TestPlanSkipsOneContainerOnly(t *testing.T) {
	m, _, warnings := apply(t, `{"metadata":{"annotations":{"podcreds.io/skip-containers":"sidecar,ghost"}},"spec":{"containers":[{"name":"app"},{"name":"sidecar"}]}}`, testSettings)
	cs := containers(m, "containers")
	if envOf(cs[0])[EnvRelativeURI] == "" || envOf(cs[1])[EnvRelativeURI] != "" || mountedToken(cs[1]) {
		t.Errorf("want app injected and sidecar untouched: %v", cs)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], `"ghost"`) {
		t.Errorf("want one warning naming the unknown container, got %v", warnings)
	}
}

func TestPlanEndpointAnnotation(t *testing.T) {
	m, _, _ := apply(t, `{"metadata":{"annotations":{"podcreds.io/credentials-endpoint":"http://169.254.170.23/v1/credentials"}},"spec":{"containers":[{"name":"a"}]}}`, testSettings)
	env := envOf(containers(m, "containers")[0])
	if env[EnvFullURI] != "http://169.254.170.23/v1/credentials" || env[EnvRelativeURI] != "" {
		t.Errorf("env %v", env)
	}
	if region := env["AWS_REGION"]; region != "" {
		t.Errorf("region injected without --region: %q", region)
	}
}

func TestPlanRefusals(t *testing.T) {
	for _, tc := range []struct{ name, pod, want string }{
		{"an endpoint annotation off the agent's addresses", `{"metadata":{"annotations":{"podcreds.io/credentials-endpoint":"http://evil.example/creds"}},"spec":{"containers":[{"name":"a"}]}}`, "podcreds.io/credentials-endpoint"},
		{"a user volume with the token volume's name", `{"spec":{"containers":[{"name":"a"}],"volumes":[{"name":"podcreds-token","emptyDir":{}}]}}`, "rename it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var pod podView
			_ = json.Unmarshal([]byte(tc.pod), &pod)
			_, _, err := plan(&pod, testSettings)
			if _, ok := err.(*refusal); !ok || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v; want a refusal mentioning %q", err, tc.want)
			}
		})
	}
}

func TestParseEndpoint(t *testing.T) {
	for _, tc := range []struct {
		in, name string
	}{
		{"/v1/credentials", EnvRelativeURI},
		{"/v2/credentials/app-1_x.y~z", EnvRelativeURI},
		{"http://169.254.170.23/v1/credentials", EnvFullURI},
		{"http://169.254.170.2/v1/credentials", EnvFullURI},
		{"http://169.254.170.2:80/v1/credentials", EnvFullURI},
		{"http://[fd00:ec2::23]/v1/credentials", EnvFullURI},
		{"", ""},
		{"v1/credentials", ""},
		{"/v1/../credentials", ""},
		{"//evil.example/x", ""},
		{"/v1/cred%0a", ""},
		{"/v1/creds?x=1", ""},
		{"https://169.254.170.23/v1/credentials", ""},
		{"http://169.254.170.23:8080/v1/credentials", ""},
		{"http://user@169.254.170.23/v1/credentials", ""},
		{"http://169.254.169.254/latest", ""},
		{"http://169.254.170.23/v1/credentials#x", ""},
		{"/" + strings.Repeat("a", 300), ""},
	} {
		got, err := ParseEndpoint(tc.in)
		if tc.name == "" {
			if err == nil {
				t.Errorf("ParseEndpoint(%q) = %v, want a refusal", tc.in, got)
			} else if !strings.Contains(err.Error(), "want a path such as") {
				t.Errorf("ParseEndpoint(%q): refusal %q does not say what is accepted", tc.in, err)
			}
			continue
		}
		if err != nil || got.Name != tc.name || got.Value != tc.in {
			t.Errorf("ParseEndpoint(%q) = %v, %v; want %s", tc.in, got, err, tc.name)
		}
	}
}
