package agent

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/roles"
)

// DebugPodPath is the health listener's read-only view of one pod, as
// `podcreds explain --agent` reads it: /debug/pods/<namespace>/<name>.
const DebugPodPath = "/debug/pods/"

// DebugPod is what the agent knows and holds for a pod on its node. It
// carries no secret: no credentials, no token, not even the external id
// (only whether one is set).
type DebugPod struct {
	Node           string    `json:"node"`
	Namespace      string    `json:"namespace"`
	Name           string    `json:"name"`
	UID            string    `json:"uid"`
	IPs            []string  `json:"ips"`
	ServiceAccount string    `json:"serviceAccount"`
	HostNetwork    bool      `json:"hostNetwork,omitempty"`
	Identifiable   bool      `json:"identifiable"`
	Role           DebugRole `json:"role"`
	// Refusal is the role decision's refusal, if the pod is refused.
	Refusal *DebugError `json:"refusal,omitempty"`
	// Credentials is the cache entry of the pod's key; nil if there is none.
	Credentials *DebugCredentials `json:"credentials,omitempty"`
}

// DebugRole is the role decision for the pod.
type DebugRole struct {
	RoleARN         string `json:"roleArn,omitempty"`
	RoleFrom        string `json:"roleFrom,omitempty"`
	RolePattern     string `json:"rolePattern,omitempty"`
	TargetRoleARN   string `json:"targetRoleArn,omitempty"`
	TargetFrom      string `json:"targetFrom,omitempty"`
	TargetPattern   string `json:"targetPattern,omitempty"`
	SessionName     string `json:"sessionName,omitempty"`
	ExternalID      bool   `json:"externalId"`
	Audience        string `json:"audience,omitempty"`
	TokenExpiration string `json:"tokenExpiration,omitempty"`
}

// DebugError is a failure's code and safe message.
type DebugError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// DebugCredentials is cache.State without a secret (there is none in it).
type DebugCredentials struct {
	Cached      bool        `json:"cached"`
	Issued      *time.Time  `json:"issued,omitempty"`
	Expiration  *time.Time  `json:"expiration,omitempty"`
	NextRefresh *time.Time  `json:"nextRefresh,omitempty"`
	Fetching    bool        `json:"fetching"`
	Users       int         `json:"users"`
	Failures    int         `json:"consecutiveFailures"`
	LastError   *DebugError `json:"lastError,omitempty"`
}

type stateCache interface {
	State(cache.Key) (cache.State, bool)
}

func (a *Agent) serveDebugPod(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	p := a.index.PodByName(ns, name)
	if p == nil {
		writeJSON(w, http.StatusNotFound, DebugError{Code: "PodNotFound",
			Message: "no pod " + ns + "/" + name + " on node " + a.opts.NodeName + " in this agent's informer; ask the agent of the node the pod runs on"})
		return
	}
	out := DebugPod{Node: a.opts.NodeName, Namespace: p.Namespace, Name: p.Name, UID: string(p.UID),
		ServiceAccount: p.ServiceAccount, HostNetwork: p.HostNetwork, Identifiable: p.Identifiable(), IPs: []string{}}
	for _, ip := range p.IPs {
		out.IPs = append(out.IPs, ip.String())
	}
	d := a.roles.Decide(r.Context(), p.Subject())
	out.Role = DebugRoleOf(d)
	if d.Err != nil {
		fe := failure.From(d.Err)
		out.Refusal = &DebugError{Code: fe.Code, Message: fe.Message}
	} else if sc, ok := a.cache.(stateCache); ok {
		if s, ok := sc.State(d.Key); ok {
			out.Credentials = debugCredentials(s)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// serveDebugMisuse answers what the debug endpoint's pattern does not
// match: another method, or a path that is not /debug/pods/<ns>/<name>.
func serveDebugMisuse(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeJSON(w, http.StatusMethodNotAllowed, DebugError{Code: "MethodNotAllowed", Message: "the debug endpoint is read-only: use GET " + DebugPodPath + "<namespace>/<name>"})
		return
	}
	writeJSON(w, http.StatusNotFound, DebugError{Code: "NotFound", Message: "ask for one pod: GET " + DebugPodPath + "<namespace>/<name>"})
}

// DebugRoleOf is the debug view of a role decision.
func DebugRoleOf(d roles.Decision) DebugRole {
	k := d.Key
	return DebugRole{RoleARN: k.RoleARN, RoleFrom: d.RoleFrom, RolePattern: d.RolePattern,
		TargetRoleARN: k.TargetRoleARN, TargetFrom: d.TargetFrom, TargetPattern: d.TargetPattern,
		SessionName: k.SessionName, ExternalID: k.ExternalID != "", Audience: k.Audience, TokenExpiration: k.TokenExpiration.String()}
}

func debugCredentials(s cache.State) *DebugCredentials {
	at := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		t = t.UTC()
		return &t
	}
	c := &DebugCredentials{Cached: s.Cached, Issued: at(s.Issued), Expiration: at(s.Expiration), NextRefresh: at(s.NextRefresh),
		Fetching: s.Fetching, Users: s.Users, Failures: s.Failures}
	if s.LastErrorCode != "" {
		c.LastError = &DebugError{Code: s.LastErrorCode, Message: s.LastError}
	}
	return c
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, _ := json.MarshalIndent(v, "", "  ")
	w.Header()["Content-Type"] = jsonContentType
	w.Header()["Cache-Control"] = noStore
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}
