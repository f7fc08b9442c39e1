package webhook

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// What the webhook writes into a pod.
const (
	// VolumeName is the projected ServiceAccount token volume's name.
	VolumeName = "podcreds-token"
	// MountDir is where every injected container mounts it, read-only.
	MountDir = "/var/run/secrets/podcreds"
	// TokenFileName is the token's file in the volume.
	TokenFileName = "token"
	// TokenFile is AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE's value.
	TokenFile = MountDir + "/" + TokenFileName
)

// The pod and namespace annotations and labels the webhook reads.
const (
	// EndpointAnnotation on a pod overrides --endpoint for its containers.
	EndpointAnnotation = "podcreds.io/credentials-endpoint"
	// SkipContainersAnnotation on a pod lists containers (comma-separated
	// names) to leave alone.
	SkipContainersAnnotation = "podcreds.io/skip-containers"
	// InjectLabel "false" on a pod or its namespace opts it out (the
	// MutatingWebhookConfiguration's selectors; the webhook checks the pod's
	// label itself too). "required" on a namespace makes admission there
	// fail closed: a pod is refused while the webhook cannot be reached.
	InjectLabel = "podcreds.io/inject"
)

// The variables the webhook sets.
const (
	EnvFullURI     = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
	EnvRelativeURI = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"
	EnvTokenFile   = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
)

// credentialVars are the variables by which a container chooses its own
// credentials; one set explicitly means the webhook leaves it alone.
var credentialVars = map[string]bool{
	"AWS_ACCESS_KEY_ID": true, "AWS_SECRET_ACCESS_KEY": true, "AWS_SESSION_TOKEN": true,
	EnvFullURI: true, EnvRelativeURI: true, EnvTokenFile: true, "AWS_CONTAINER_AUTHORIZATION_TOKEN": true,
	"AWS_WEB_IDENTITY_TOKEN_FILE": true, "AWS_ROLE_ARN": true, "AWS_ROLE_SESSION_NAME": true,
	"AWS_PROFILE": true, "AWS_DEFAULT_PROFILE": true, "AWS_SHARED_CREDENTIALS_FILE": true, "AWS_CONFIG_FILE": true,
}

// Settings are what the webhook injects besides the fixed names above.
type Settings struct {
	// Endpoint is the default credentials endpoint: a path, set as
	// AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (169.254.170.2), or an http
	// URL, set as AWS_CONTAINER_CREDENTIALS_FULL_URI.
	Endpoint string
	// TokenAudience and TokenExpiration are the projected token's; the
	// agent's --token-audience must match.
	TokenAudience   string
	TokenExpiration time.Duration
	// Region, if set, becomes AWS_REGION and AWS_DEFAULT_REGION where a
	// container does not set them.
	Region string
}

// agentHosts are the addresses the agent serves the container protocol on
// and that SDKs allow for a plain-http FULL_URI.
var agentHosts = map[string]bool{"169.254.170.2": true, "169.254.170.23": true, "[fd00:ec2::23]": true}

// ParseEndpoint turns an endpoint setting into the variable that carries
// it. A path is RELATIVE_URI; an http URL on one of the agent's addresses is
// FULL_URI. Anything else is refused with what would be accepted.
func ParseEndpoint(s string) (envVar, error) {
	const want = "want a path such as /v1/credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI, on 169.254.170.2) " +
		"or http://169.254.170.23/v1/credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI; hosts 169.254.170.2, 169.254.170.23, [fd00:ec2::23])"
	if len(s) > 256 {
		return envVar{}, fmt.Errorf("credentials endpoint is %d bytes long; %s", len(s), want)
	}
	if strings.HasPrefix(s, "/") {
		if !cleanPath(s) {
			return envVar{}, fmt.Errorf("credentials endpoint %q is not a plain path; %s", s, want)
		}
		return envVar{Name: EnvRelativeURI, Value: s}, nil
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "http" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" ||
		!agentHosts[hostOnly(u)] || (u.Port() != "" && u.Port() != "80") || !cleanPath(u.EscapedPath()) {
		return envVar{}, fmt.Errorf("credentials endpoint %q is not accepted; %s", s, want)
	}
	return envVar{Name: EnvFullURI, Value: s}, nil
}

func hostOnly(u *url.URL) string {
	h := u.Hostname()
	if strings.Contains(h, ":") {
		return "[" + h + "]"
	}
	return h
}

// cleanPath accepts an absolute path of unreserved characters and slashes,
// without empty or dot segments.
func cleanPath(p string) bool {
	if !strings.HasPrefix(p, "/") || strings.Contains(p, "//") {
		return false
	}
	for _, seg := range strings.Split(p[1:], "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("/-._~", c) >= 0) {
			return false
		}
	}
	return true
}

// refusal is an injection the webhook will not make for a reason the pod's
// author must fix; the API server shows it to them.
type refusal struct{ msg string }

func (r *refusal) Error() string { return r.msg }

// plan is the injection for pod as a JSONPatch: as few operations as
// possible, none when there is nothing to do (so a second invocation, which
// sees the first one's result, changes nothing). warnings go back to the
// client (kubectl prints them).
func plan(pod *podView, s Settings) (ops []patchOp, warnings []string, err error) {
	endpoint, err := ParseEndpoint(s.Endpoint)
	if v, ok := pod.Metadata.Annotations[EndpointAnnotation]; ok {
		if endpoint, err = ParseEndpoint(strings.TrimSpace(v)); err != nil {
			return nil, nil, &refusal{fmt.Sprintf("pod %s: annotation %s: %v", pod.displayName(), EndpointAnnotation, err)}
		}
	}
	if err != nil {
		return nil, nil, err // the webhook's own setting; validated at start
	}

	skip := map[string]bool{}
	for _, n := range strings.Split(pod.Metadata.Annotations[SkipContainersAnnotation], ",") {
		if n = strings.TrimSpace(n); n != "" {
			skip[n] = true
		}
	}

	haveVolume := false
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		if v.Name != VolumeName {
			continue
		}
		if !v.isOurs(s.TokenAudience) {
			return nil, nil, &refusal{fmt.Sprintf("pod %s has a volume named %q that is not podcreds' projected token (audience %q, path %q); rename it, or label the pod %s=false to opt out",
				pod.displayName(), VolumeName, s.TokenAudience, TokenFileName, InjectLabel)}
		}
		haveVolume = true
	}

	injected := 0
	seen := map[string]bool{}
	for _, list := range []struct {
		path       string
		containers []containerView
	}{{"/spec/initContainers", pod.Spec.InitContainers}, {"/spec/containers", pod.Spec.Containers}} {
		for i := range list.containers {
			c := &list.containers[i]
			seen[c.Name] = true
			if skip[c.Name] || setsCredentials(c) {
				continue
			}
			if m := foreignMountAt(c, MountDir); m != "" {
				warnings = append(warnings, fmt.Sprintf("podcreds: container %s mounts volume %s at %s, where podcreds mounts its token; not injected", c.Name, m, MountDir))
				continue
			}
			base := list.path + "/" + strconv.Itoa(i)
			env := []envVar{endpoint, {Name: EnvTokenFile, Value: TokenFile}}
			if s.Region != "" {
				for _, name := range []string{"AWS_REGION", "AWS_DEFAULT_REGION"} {
					if !hasEnv(c, name) {
						env = append(env, envVar{Name: name, Value: s.Region})
					}
				}
			}
			ops = appendItems(ops, base+"/env", len(c.Env) == 0, env)
			if !mounts(c, VolumeName) {
				ops = appendItems(ops, base+"/volumeMounts", len(c.VolumeMounts) == 0,
					[]mountView{{Name: VolumeName, MountPath: MountDir, ReadOnly: true}})
			}
			injected++
		}
	}
	for n := range skip {
		if !seen[n] {
			warnings = append(warnings, fmt.Sprintf("podcreds: annotation %s names container %q, which the pod does not have", SkipContainersAnnotation, n))
		}
	}
	if injected > 0 && !haveVolume {
		ops = appendItems(ops, "/spec/volumes", len(pod.Spec.Volumes) == 0, []tokenVolume{newTokenVolume(s)})
	}
	return ops, warnings, nil
}

// appendItems adds items to the array at path: one operation creating the
// array when it is absent or empty, else one append per item.
func appendItems[T any](ops []patchOp, path string, absent bool, items []T) []patchOp {
	if absent {
		return append(ops, patchOp{Op: "add", Path: path, Value: items})
	}
	for _, it := range items {
		ops = append(ops, patchOp{Op: "add", Path: path + "/-", Value: it})
	}
	return ops
}

func setsCredentials(c *containerView) bool {
	for _, e := range c.Env {
		if credentialVars[e.Name] {
			return true
		}
	}
	return false
}

func hasEnv(c *containerView, name string) bool {
	for _, e := range c.Env {
		if e.Name == name {
			return true
		}
	}
	return false
}

func mounts(c *containerView, volume string) bool {
	for _, m := range c.VolumeMounts {
		if m.Name == volume {
			return true
		}
	}
	return false
}

// foreignMountAt names another volume mounted at dir, if any.
func foreignMountAt(c *containerView, dir string) string {
	for _, m := range c.VolumeMounts {
		if strings.TrimRight(m.MountPath, "/") == dir && m.Name != VolumeName {
			return m.Name
		}
	}
	return ""
}

// tokenVolume is the projected ServiceAccount token volume, as it is
// written into the patch.
type tokenVolume struct {
	Name      string `json:"name"`
	Projected struct {
		Sources []tokenSource `json:"sources"`
	} `json:"projected"`
}

type tokenSource struct {
	ServiceAccountToken struct {
		Audience          string `json:"audience"`
		ExpirationSeconds int64  `json:"expirationSeconds"`
		Path              string `json:"path"`
	} `json:"serviceAccountToken"`
}

func newTokenVolume(s Settings) tokenVolume {
	var src tokenSource
	src.ServiceAccountToken.Audience = s.TokenAudience
	src.ServiceAccountToken.ExpirationSeconds = int64(s.TokenExpiration / time.Second)
	src.ServiceAccountToken.Path = TokenFileName
	v := tokenVolume{Name: VolumeName}
	v.Projected.Sources = []tokenSource{src}
	return v
}

// patchOp is one JSONPatch (RFC 6902) operation.
type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}
