package explain

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/podcreds/podcreds/agent"
	"github.com/podcreds/podcreds/roles"
)

// WriteText writes r for people: one line per fact, values aligned.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, a...)) }
	p := r.Pod
	line("pod", "%s/%s (%s)", p.Namespace, p.Name, p.Phase)
	if p.Node == "" {
		line("node", "none: not scheduled yet, so no agent serves it")
	} else {
		line("node", "%s", p.Node)
	}
	switch {
	case len(p.IPs) == 0:
		line("addresses", "none yet")
	case p.HostNetwork:
		line("addresses", "%s (hostNetwork: served only on a verified ServiceAccount token)", strings.Join(p.IPs, ", "))
	default:
		line("addresses", "%s", strings.Join(p.IPs, ", "))
	}
	if p.ServiceAccount == "" {
		line("serviceaccount", "none (a static pod)")
	} else {
		line("serviceaccount", "%s", p.ServiceAccount)
	}
	ro := r.Role
	switch {
	case ro.RoleARN == "":
		line("role", "none")
	case ro.RoleFrom == roles.FromPod && ro.RolePattern != "":
		line("role", "%s (pod annotation %s, allowed by namespace pattern %q)", ro.RoleARN, roles.PodRoleAnnotation, ro.RolePattern)
	case ro.RoleFrom == roles.FromPod:
		line("role", "%s (pod annotation %s, not allowed by the namespace)", ro.RoleARN, roles.PodRoleAnnotation)
	default:
		line("role", "%s (serviceaccount annotation %s)", ro.RoleARN, roles.RoleAnnotation)
	}
	switch {
	case ro.TargetRoleARN == "":
		line("target role", "none (one hop, no session tags)")
	case ro.TargetPattern != "":
		line("target role", "%s (%s annotation %s, allowed by namespace pattern %q)", ro.TargetRoleARN, ro.TargetFrom, roles.TargetRoleAnnotation, ro.TargetPattern)
	default:
		line("target role", "%s (%s annotation %s)", ro.TargetRoleARN, ro.TargetFrom, roles.TargetRoleAnnotation)
	}
	if ro.SessionName != "" {
		line("session name", "%s (serviceaccount annotation %s)", ro.SessionName, roles.SessionNameAnnotation)
	} else if p.ServiceAccount != "" {
		line("session name", "podcreds@%s.%s (default)", p.Namespace, p.ServiceAccount)
	}
	if ro.ExternalID {
		line("external id", "set (serviceaccount annotation %s)", roles.ExternalIDAnnotation)
	} else {
		line("external id", "none")
	}
	if len(r.AllowedAccounts) == 0 {
		line("accounts", "any (no --allowed-accounts)")
	} else {
		line("accounts", "%s (--allowed-accounts)", strings.Join(r.AllowedAccounts, ", "))
	}
	if ro.Audience != "" {
		line("token", "audience %s, lifetime %s", ro.Audience, ro.TokenExpiration)
	}
	switch {
	case r.Answer.Served && p.Node == "":
		line("answer", "allowed, once the pod is scheduled (no agent serves it yet)")
	case r.Answer.Served:
		line("answer", "served")
	default:
		line("answer", "refused: %d %s: %s", r.Answer.Status, r.Answer.Code, r.Answer.Message)
	}
	wh := r.Webhook
	switch {
	case wh.Refused:
		line("webhook", "%s", wh.Why)
	case !wh.Inject:
		line("webhook", "would not inject: %s", wh.Why)
	default:
		line("webhook", "would inject into %s", strings.Join(wh.Containers, ", "))
		for _, e := range wh.Env {
			line("", "env %s", e)
		}
		if wh.Volume != "" {
			line("", "volume %s", wh.Volume)
		}
	}
	for _, warn := range wh.Warnings {
		line("", "warning: %s", warn)
	}
	if r.AgentError != "" {
		line("agent", "%s", r.AgentError)
	} else if r.Agent != nil {
		writeLive(line, r.Agent)
	}
	return tw.Flush()
}

func writeLive(line func(k, format string, a ...any), a *agent.DebugPod) {
	c := a.Credentials
	switch {
	case a.Refusal != nil:
		line("agent", "on %s: refuses the pod: %s: %s", a.Node, a.Refusal.Code, a.Refusal.Message)
	case c == nil:
		line("agent", "on %s: nothing cached for the pod's role yet", a.Node)
	default:
		state := "not cached"
		if c.Cached && c.Expiration != nil {
			state = "cached, expires " + c.Expiration.Format(time.RFC3339)
		}
		line("agent", "on %s: %s; %d pod(s) share the entry", a.Node, state, c.Users)
		if c.NextRefresh != nil {
			line("", "next refresh %s", c.NextRefresh.Format(time.RFC3339))
		}
		if c.Fetching {
			line("", "a fetch is in flight")
		}
		if c.LastError != nil {
			hop := ""
			if a.Role.TargetRoleARN != "" {
				hop = " (chain of " + a.Role.RoleARN + " then " + a.Role.TargetRoleARN + ")"
			}
			line("", "last error%s: %s: %s (%d consecutive retriable failures)", hop, c.LastError.Code, c.LastError.Message, c.Failures)
		} else {
			line("", "last error: none")
		}
	}
}
