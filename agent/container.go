package agent

import (
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/failure"
)

// containerHandler serves the container-credentials protocol
// (AWS_CONTAINER_CREDENTIALS_FULL_URI / _RELATIVE_URI). The hot path — a
// known pod whose credentials are cached — is a few map reads and one write
// of a body rendered when the credentials were fetched.
type containerHandler struct {
	a     *Agent
	hosts hostSet
	// anyPath serves every path, as the ECS address must: RELATIVE_URI is
	// whatever the pod's environment says.
	anyPath bool
	stats   *endpointStats
}

func (h *containerHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	creds, pod, err := h.credentials(r, start)
	if err != nil {
		if pod != nil {
			h.a.opts.Events.Failed(pod.Ref(), err)
		}
		writeError(w, r, h.a.logger, h.stats, start, err)
		return
	}
	h.a.opts.Events.Served(pod.UID)
	hdr := w.Header()
	hdr["Content-Type"] = jsonContentType
	hdr["Cache-Control"] = noStore
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(creds.ContainerBody())
	}
	h.stats.done(http.StatusOK, start)
}

// credentials answers r, and names the pod it was identified as (nil if it
// was not), so the pod can be told of a refusal.
func (h *containerHandler) credentials(r *http.Request, start time.Time) (*cache.Credentials, *Pod, error) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return nil, nil, errMethod
	}
	if !h.hosts.allows(r.Host) {
		return nil, nil, h.hosts.refusal()
	}
	if !h.anyPath && r.URL.Path != h.a.opts.CredentialsPath {
		return nil, nil, errPath
	}
	pod, err := h.a.identifyContainer(r, start)
	if err != nil {
		return nil, nil, err
	}
	ref, err := h.a.resolve(r, pod, start)
	if err != nil {
		return nil, pod, err
	}
	creds, err := h.a.cache.GetRefAt(r.Context(), ref, pod.Ref(), start)
	return creds, pod, err
}

// identify finds the pod a request that arrived at start comes from by its
// source address, after charging the address's rate limit.
func (a *Agent) identify(r *http.Request, start time.Time) (*Pod, error) {
	ip, c, ok := caller(r)
	if !ok {
		return nil, errRemote
	}
	if err := a.limiter.allowFrom(c.bucketSlot(), ip, start); err != nil {
		return nil, err
	}
	return a.index.lookupFrom(r.Context(), c.podSlot(), ip)
}

// identifyContainer identifies a container-endpoint caller, applying the
// token mode: a presented token must agree with the source address.
func (a *Agent) identifyContainer(r *http.Request, start time.Time) (*Pod, error) {
	if a.opts.TokenMode == TokenOff || a.opts.Verifier == nil {
		return a.identify(r, start)
	}
	ip, c, ok := caller(r)
	if !ok {
		return nil, errRemote
	}
	if err := a.limiter.allowFrom(c.bucketSlot(), ip, start); err != nil {
		return nil, err
	}
	token := presentedToken(r)
	if token == "" {
		if a.opts.TokenMode == TokenRequired {
			return nil, errTokenMissing
		}
		return a.index.lookupFrom(r.Context(), c.podSlot(), ip)
	}
	return a.identifyWithToken(r.Context(), ip, localIP(r), token)
}

// resolve returns the credentials key of pod's role decision, with its
// cache entry, for a request that arrived at start. If it is not the key the
// binder holds for the pod (the ServiceAccount's role changed since), the
// pod is queued for rebinding, so its new entry is kept and refreshed rather
// than fetched per request.
//
// A decision whose key the binder holds is kept on the pod until the answers
// it rests on expire (roles.Decision.Until): the decision could not change
// before then, and neither does the binder's key for an unchanged pod. So a
// pod's requests decide once per ServiceAccount TTL, and the rest read one
// pointer, which also holds the key's cache entry (cache.Ref).
func (a *Agent) resolve(r *http.Request, pod *Pod, start time.Time) (cache.Ref, error) {
	now := a.clockAt(start)
	if d := pod.decision.Load(); d != nil && now.Before(d.until) {
		return d.ref, nil
	}
	d := a.roles.Decide(r.Context(), pod.Subject())
	if d.Err != nil {
		return cache.Ref{}, d.Err
	}
	ref := a.cache.Ref(d.Key)
	if a.binder.holds(pod.UID, d.Key) {
		pod.decision.Store(&podDecision{ref: ref, until: d.Until})
	} else {
		a.binder.enqueue(pod.UID)
	}
	return ref, nil
}

// clockAt is the agent clock's reading for a request that arrived at start
// (read from the real clock): start itself when the agent runs on the real
// clock, so a request reads the time once.
func (a *Agent) clockAt(start time.Time) time.Time {
	if a.realClock {
		return start
	}
	return a.opts.Clock.Now()
}

// callerIP is the address r came from: its connection's, parsed once when the
// listener accepted it (connlimit.go), or else r.RemoteAddr parsed.
func callerIP(r *http.Request) (netip.Addr, bool) {
	ip, _, ok := caller(r)
	return ip, ok
}

// caller is callerIP with the connection, if it is one of the agent's
// listeners' (nil otherwise).
func caller(r *http.Request) (netip.Addr, *limitedConn, bool) {
	if c, ok := r.Context().Value(connKey{}).(*limitedConn); ok {
		return c.ip, c, true
	}
	ip, ok := remoteIP(r.RemoteAddr)
	return ip, nil, ok
}

// bucketSlot and podSlot are where c keeps what its requests found (nil if
// c is nil: a request from elsewhere looks up each time).
func (c *limitedConn) bucketSlot() *atomic.Pointer[bucket] {
	if c == nil {
		return nil
	}
	return &c.bucket
}

func (c *limitedConn) podSlot() *atomic.Pointer[podMemo] {
	if c == nil {
		return nil
	}
	return &c.pod
}

// remoteIP parses net/http's RemoteAddr ("ip:port", "[ip%zone]:port").
// IPv4-mapped IPv6 addresses are unmapped and zones dropped, so one pod has
// one spelling.
func remoteIP(remote string) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap().WithZone(""), true
}

// Fixed refusals, built once.
var (
	errMethod = failure.Final(http.StatusMethodNotAllowed, "MethodNotAllowed", "method not served here: credentials are read with GET (or HEAD); an IMDS session token is asked for with PUT /latest/api/token", nil)
	errPath   = failure.Final(http.StatusNotFound, "NotFound", "no such path on this listener: it serves credentials at --credentials-path only (default /v1/credentials); the ECS address 169.254.170.2 serves every path", nil)
	errRemote = failure.Final(http.StatusBadRequest, "BadRemoteAddress", "cannot parse the caller's address, so the caller cannot be identified", nil)
)
