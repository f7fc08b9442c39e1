package tokenreq

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// Role session name limits, from the STS API: 2–64 characters out of
// [\w+=,.@-].
const (
	maxSessionNameLen = 64
	sessionPrefix     = "podcreds@"
	// sessionHashLen hex digits of SHA-256 keep names that had to be
	// shortened or rewritten apart: 32 bits, for at most a few thousand
	// ServiceAccounts per account.
	sessionHashLen = 8
)

// SessionName returns the STS role session name for a ServiceAccount:
// "podcreds@<namespace>.<serviceAccount>". The session name shows up in the
// assumed-role ARN and in CloudTrail, so it tells an auditor which
// ServiceAccount acted; it is the same for every pod and every node, so one
// ServiceAccount is one principal.
//
// Valid Kubernetes names need no change as long as they fit: a namespace is
// a DNS label (no dots), so the first dot separates the two names
// unambiguously. Anything else is made to fit: characters STS does not allow
// become '-', and a name that had to change, is longer than 64 characters or
// has a dot in its namespace is cut to leave room for '-' and a hash of the
// original namespace and ServiceAccount, which keeps different
// ServiceAccounts apart. The result is deterministic, 10–64
// characters long, and uses only [A-Za-z0-9_+=,.@-].
func SessionName(namespace, serviceAccount string) string {
	raw := sessionPrefix + namespace + "." + serviceAccount
	clean := strings.Map(func(r rune) rune {
		if sessionNameChar(r) {
			return r
		}
		return '-'
	}, raw)
	if clean == raw && len(clean) <= maxSessionNameLen && !strings.Contains(namespace, ".") {
		return clean
	}
	sum := sha256.Sum256([]byte(namespace + "\x00" + serviceAccount))
	suffix := "-" + hex.EncodeToString(sum[:])[:sessionHashLen]
	// clean is ASCII (strings.Map replaced every other rune), so cutting by
	// bytes cannot split a character.
	if keep := maxSessionNameLen - len(suffix); len(clean) > keep {
		clean = clean[:keep]
	}
	return clean + suffix
}

// sessionNameChar reports whether STS allows r in a role session name.
func sessionNameChar(r rune) bool {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		return true
	}
	return strings.ContainsRune("_+=,.@-", r)
}

// CheckSessionName reports why name is not a role session name STS
// accepts (2–64 characters of [A-Za-z0-9_+=,.@-]), or nil. A chosen name
// (podcreds.io/session-name) is used as it is, never rewritten: a name
// that changed silently would break what depends on it staying the same.
func CheckSessionName(name string) error {
	if len(name) < 2 || len(name) > maxSessionNameLen {
		return fmt.Errorf("a role session name must be 2 to %d characters long, got %d", maxSessionNameLen, len(name))
	}
	for _, r := range name {
		if !sessionNameChar(r) {
			return fmt.Errorf("a role session name may hold only letters, digits and _+=,.@-, got %q", r)
		}
	}
	return nil
}
