package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/failure"
)

// IMDSTokenMode says whether IMDSv1 (no session token) is allowed.
type IMDSTokenMode string

// IMDS token modes.
const (
	// IMDSTokensRequired serves only requests with a valid session token (IMDSv2).
	IMDSTokensRequired IMDSTokenMode = "required"
	// IMDSTokensOptional also serves requests without a token (IMDSv1);
	// a token that is present must still be valid.
	IMDSTokensOptional IMDSTokenMode = "optional"
)

// IMDS paths served. Everything else is 404: nothing is proxied to the
// node's real instance metadata service.
const (
	imdsTokenPath   = "/latest/api/token"
	imdsCredsPrefix = "/latest/meta-data/iam/security-credentials/"
	imdsInfoPath    = "/latest/meta-data/iam/info"
	imdsRegionPath  = "/latest/meta-data/placement/region"
	imdsAZPath      = "/latest/meta-data/placement/availability-zone"
	// The Go SDK reads its region from the identity document.
	imdsIdentityPath = "/latest/dynamic/instance-identity/document"

	imdsTokenHeader    = "X-Aws-Ec2-Metadata-Token"
	imdsTTLHeader      = "X-Aws-Ec2-Metadata-Token-Ttl-Seconds"
	imdsMaxTokenTTL    = 21600
	imdsMetadataHost   = "169.254.169.254"
	imdsUnauthorized   = "Unauthorized"
	imdsTokenTTLReason = "X-aws-ec2-metadata-token-ttl-seconds must be a whole number of seconds from 1 to 21600"
)

// imdsHandler serves the instance-metadata subset that SDKs use to find
// credentials and their region, from the same identification and cache as
// the container endpoint.
type imdsHandler struct {
	a      *Agent
	hosts  hostSet
	tokens *imdsTokens
	stats  *endpointStats
}

var (
	errIMDSForwarded = failure.Final(http.StatusForbidden, "Forbidden", "token requests may not carry X-Forwarded-For", nil)
	errIMDSTTL       = failure.Final(http.StatusBadRequest, "BadRequest", imdsTokenTTLReason, nil)
	errIMDSNoToken   = failure.Final(http.StatusUnauthorized, imdsUnauthorized, "an IMDSv2 session token is required (--imds-tokens=required): PUT /latest/api/token first, as current SDKs do", nil)
	errIMDSNotFound  = failure.Final(http.StatusNotFound, "NotFound", "not found: this endpoint serves only the instance-metadata paths SDKs use for credentials and region, and never forwards to the node's IMDS", nil)
	errIMDSRole      = failure.Final(http.StatusNotFound, "NotFound", "no such role for this pod: iam/security-credentials/ lists the one it has", nil)
	errIMDSZone      = failure.Final(http.StatusNotFound, "NotFound", "no availability zone configured (--imds-availability-zone)", nil)
)

func (h *imdsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if !h.hosts.allows(r.Host) {
		writeError(w, r, h.a.logger, h.stats, start, h.hosts.refusal())
		return
	}
	// Refuse anything but a plain, decoded path: no %-escapes, no dot
	// segments, no doubled slashes. SDKs never send them.
	p := r.URL.Path
	if r.URL.RawPath != "" || strings.Contains(p, "..") || strings.Contains(p, "//") {
		writeError(w, r, h.a.logger, h.stats, start, errIMDSNotFound)
		return
	}
	if p == imdsTokenPath {
		h.serveToken(w, r, start)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeError(w, r, h.a.logger, h.stats, start, errMethod)
		return
	}
	pod, err := h.a.identify(r, start)
	if err == nil {
		err = h.authorize(r, pod, start)
	}
	if err != nil {
		writeError(w, r, h.a.logger, h.stats, start, err)
		return
	}
	switch {
	case p == imdsRegionPath:
		h.text(w, r, start, h.a.opts.IMDSRegion)
	case p == imdsAZPath:
		if h.a.opts.IMDSAvailabilityZone == "" {
			writeError(w, r, h.a.logger, h.stats, start, errIMDSZone)
			return
		}
		h.text(w, r, start, h.a.opts.IMDSAvailabilityZone)
	case p == imdsIdentityPath:
		h.identityDocument(w, r, start)
	case p == imdsInfoPath || strings.HasPrefix(p, imdsCredsPrefix) || p == strings.TrimSuffix(imdsCredsPrefix, "/"):
		h.serveIAM(w, r, start, pod, p)
	default:
		writeError(w, r, h.a.logger, h.stats, start, errIMDSNotFound)
	}
}

// serveToken mints a session token for the calling pod.
func (h *imdsHandler) serveToken(w http.ResponseWriter, r *http.Request, start time.Time) {
	if r.Method != http.MethodPut {
		writeError(w, r, h.a.logger, h.stats, start, errMethod)
		return
	}
	if _, forwarded := r.Header["X-Forwarded-For"]; forwarded {
		writeError(w, r, h.a.logger, h.stats, start, errIMDSForwarded)
		return
	}
	ttl, err := strconv.Atoi(r.Header.Get(imdsTTLHeader))
	if err != nil || ttl < 1 || ttl > imdsMaxTokenTTL {
		writeError(w, r, h.a.logger, h.stats, start, errIMDSTTL)
		return
	}
	pod, err := h.a.identify(r, start)
	if err != nil {
		writeError(w, r, h.a.logger, h.stats, start, err)
		return
	}
	ip, _ := callerIP(r) // identify found it already
	token := h.tokens.mint(start.Add(time.Duration(ttl)*time.Second), ip, pod.UID)
	hdr := w.Header()
	hdr["Content-Type"] = textContentType
	hdr[imdsTTLHeader] = []string{strconv.Itoa(ttl)}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(token))
	h.stats.done(http.StatusOK, start)
}

// authorize applies the token mode to a metadata request from pod.
func (h *imdsHandler) authorize(r *http.Request, pod *Pod, start time.Time) error {
	v := r.Header[imdsTokenHeader]
	if len(v) == 0 {
		if h.a.opts.IMDSTokenMode == IMDSTokensOptional {
			return nil
		}
		return errIMDSNoToken
	}
	ip, _ := callerIP(r)
	if err := h.tokens.check(v[0], h.a.clockAt(start), ip, pod.UID); err != nil {
		return failure.Final(http.StatusUnauthorized, imdsUnauthorized, "invalid IMDSv2 session token: it is expired, of another pod or of an earlier agent process; get a new one with PUT /latest/api/token", err)
	}
	return nil
}

// serveIAM answers the iam/ paths for pod's role.
func (h *imdsHandler) serveIAM(w http.ResponseWriter, r *http.Request, start time.Time, pod *Pod, p string) {
	ref, err := h.a.resolve(r, pod, start)
	if err != nil {
		h.a.opts.Events.Failed(pod.Ref(), err)
		writeError(w, r, h.a.logger, h.stats, start, err)
		return
	}
	role := roleName(ref.Key().ServedRoleARN())
	if p == imdsCredsPrefix || p+"/" == imdsCredsPrefix {
		h.text(w, r, start, role)
		return
	}
	if p != imdsInfoPath && p[len(imdsCredsPrefix):] != role {
		writeError(w, r, h.a.logger, h.stats, start, errIMDSRole)
		return
	}
	creds, err := h.a.cache.GetRefAt(r.Context(), ref, pod.Ref(), start)
	if err != nil {
		h.a.opts.Events.Failed(pod.Ref(), err)
		writeError(w, r, h.a.logger, h.stats, start, err)
		return
	}
	h.a.opts.Events.Served(pod.UID)
	body := creds.IMDSBody()
	if p == imdsInfoPath {
		body = infoBody(ref.Key().ServedRoleARN(), creds)
	}
	hdr := w.Header()
	hdr["Content-Type"] = textContentType // real IMDS labels JSON as text/plain
	hdr["Cache-Control"] = noStore
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
	h.stats.done(http.StatusOK, start)
}

func (h *imdsHandler) text(w http.ResponseWriter, r *http.Request, start time.Time, s string) {
	w.Header()["Content-Type"] = textContentType
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(s))
	}
	h.stats.done(http.StatusOK, start)
}

// identityDocument serves the region and zone only: there is no instance
// behind podcreds, and nothing about the node is disclosed.
func (h *imdsHandler) identityDocument(w http.ResponseWriter, r *http.Request, start time.Time) {
	b, _ := json.Marshal(struct {
		Region           string `json:"region"`
		AvailabilityZone string `json:"availabilityZone,omitempty"`
		Version          string `json:"version"`
	}{h.a.opts.IMDSRegion, h.a.opts.IMDSAvailabilityZone, "2017-09-30"})
	h.text(w, r, start, string(b))
}

// roleName is the last segment of a role ARN (arn:aws:iam::1:role/path/name
// → name), what IMDS lists under security-credentials/.
func roleName(arn string) string {
	i := strings.LastIndexAny(arn, "/:")
	return arn[i+1:]
}

// infoBody renders iam/info. The instance profile is named after the role;
// its id is a stable digest, since there is no real instance profile.
func infoBody(roleARN string, creds *cache.Credentials) []byte {
	sum := sha256.Sum256([]byte(roleARN))
	b, _ := json.Marshal(struct {
		Code               string
		LastUpdated        string
		InstanceProfileArn string
		InstanceProfileId  string
	}{
		Code:               "Success",
		LastUpdated:        creds.Issued.UTC().Format(time.RFC3339),
		InstanceProfileArn: strings.Replace(roleARN, ":role/", ":instance-profile/", 1),
		InstanceProfileId:  "AIPA" + strings.ToUpper(hex.EncodeToString(sum[:8])),
	})
	return b
}
