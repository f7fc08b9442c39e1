package agent

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash"
	"net/netip"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// IMDS session tokens are minted by podcreds, never by the node's real IMDS
// (which podcreds does not talk to at all). A token is
//
//	base64url( version | expiry (unix s, 8 bytes) | pod IP (16) | SHA-256(pod UID)[:16] | HMAC-SHA256(key, all before)[:16] )
//
// with the node's key (LoadIMDSKey: a file every agent on the node shares,
// so tokens survive an upgrade) or, without one, a random key made at start,
// so tokens die with the process (SDKs ask for a new one on 401). Binding the pod's UID and IP means a
// token leaked from one pod, or replayed by a pod that later gets the same
// IP, is refused.
const (
	imdsTokenVersion = 1
	imdsPayloadLen   = 1 + 8 + 16 + 16
	imdsTagLen       = 16
	imdsRawLen       = imdsPayloadLen + imdsTagLen
)

// imdsEncodedLen is the length of every valid token string.
var imdsEncodedLen = base64.RawURLEncoding.EncodedLen(imdsRawLen)

// Reasons a token is refused; all answer 401.
var (
	errIMDSTokenMalformed = errors.New("malformed IMDS token")
	errIMDSTokenForged    = errors.New("IMDS token not minted by this agent")
	errIMDSTokenExpired   = errors.New("IMDS token expired")
	errIMDSTokenOtherPod  = errors.New("IMDS token belongs to another pod")
)

// imdsTokens mints and checks tokens. Safe for concurrent use.
type imdsTokens struct {
	key  [32]byte
	macs sync.Pool // of hash.Hash (HMAC-SHA256 with key), reused across requests

	// verified remembers tokens that passed check, with what they were
	// bound to, so an SDK reusing its token (for hours) costs a map read,
	// not an HMAC. Bounded: emptied when it reaches verifiedMax.
	mu       sync.RWMutex
	verified map[string]verifiedToken
}

type verifiedToken struct {
	expiry int64 // unix seconds
	ip     netip.Addr
	uid    types.UID
}

const verifiedMax = 4096

// newIMDSTokens mints under key, or under a random key of its own if key is
// nil (tokens then die with the process).
func newIMDSTokens(key *[IMDSKeySize]byte) *imdsTokens {
	t := &imdsTokens{}
	if key != nil {
		t.key = *key
	} else if _, err := rand.Read(t.key[:]); err != nil {
		panic("crypto/rand: " + err.Error()) // does not fail on Linux
	}
	t.macs.New = func() any { return hmac.New(sha256.New, t.key[:]) }
	return t
}

func (t *imdsTokens) payload(buf *[imdsRawLen]byte, expiry time.Time, ip netip.Addr, uid types.UID) {
	buf[0] = imdsTokenVersion
	binary.BigEndian.PutUint64(buf[1:9], uint64(expiry.Unix()))
	a16 := ip.As16()
	copy(buf[9:25], a16[:])
	sum := sha256.Sum256([]byte(uid))
	copy(buf[25:41], sum[:16])
}

func (t *imdsTokens) tag(payload []byte, out []byte) {
	m := t.macs.Get().(hash.Hash)
	m.Reset()
	m.Write(payload)
	var sum [sha256.Size]byte
	copy(out, m.Sum(sum[:0])[:imdsTagLen])
	t.macs.Put(m)
}

// mint returns a token for the pod uid at ip, valid until expiry.
func (t *imdsTokens) mint(expiry time.Time, ip netip.Addr, uid types.UID) string {
	var buf [imdsRawLen]byte
	t.payload(&buf, expiry, ip, uid)
	t.tag(buf[:imdsPayloadLen], buf[imdsPayloadLen:])
	return base64.RawURLEncoding.EncodeToString(buf[:])
}

// check verifies that token was minted here, is unexpired at now, and was
// issued to the pod uid at ip.
func (t *imdsTokens) check(token string, now time.Time, ip netip.Addr, uid types.UID) error {
	if len(token) != imdsEncodedLen {
		return errIMDSTokenMalformed
	}
	t.mu.RLock()
	v, ok := t.verified[token]
	t.mu.RUnlock()
	if ok {
		switch {
		case now.Unix() >= v.expiry:
			return errIMDSTokenExpired
		case v.ip != ip || v.uid != uid:
			return errIMDSTokenOtherPod
		}
		return nil
	}
	err := t.verify(token, now, ip, uid)
	if err == nil {
		var raw [imdsRawLen]byte
		var src [128]byte
		n := copy(src[:], token)
		_, _ = base64.RawURLEncoding.Decode(raw[:], src[:n])
		t.mu.Lock()
		if len(t.verified) >= verifiedMax || t.verified == nil {
			t.verified = make(map[string]verifiedToken, 64)
		}
		t.verified[token] = verifiedToken{expiry: int64(binary.BigEndian.Uint64(raw[1:9])), ip: ip, uid: uid}
		t.mu.Unlock()
	}
	return err
}

// verify checks token cryptographically: the slow path of check.
func (t *imdsTokens) verify(token string, now time.Time, ip netip.Addr, uid types.UID) error {
	var raw [imdsRawLen]byte
	var src [128]byte // imdsEncodedLen is 76: no heap copy of the token
	n := copy(src[:], token)
	if m, err := base64.RawURLEncoding.Decode(raw[:], src[:n]); err != nil || m != imdsRawLen || raw[0] != imdsTokenVersion {
		return errIMDSTokenMalformed
	}
	var tag [imdsTagLen]byte
	t.tag(raw[:imdsPayloadLen], tag[:])
	if subtle.ConstantTimeCompare(tag[:], raw[imdsPayloadLen:]) != 1 {
		return errIMDSTokenForged
	}
	if now.Unix() >= int64(binary.BigEndian.Uint64(raw[1:9])) {
		return errIMDSTokenExpired
	}
	var want [imdsRawLen]byte
	t.payload(&want, time.Time{}, ip, uid)
	if subtle.ConstantTimeCompare(want[9:41], raw[9:41]) != 1 {
		return errIMDSTokenOtherPod
	}
	return nil
}
