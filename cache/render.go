package cache

import (
	"encoding/json"
	"time"
)

// expirationLayout is RFC 3339 in UTC with whole seconds, the form every SDK
// parses (botocore and JS v3 choke on some fractional forms). Formatting
// truncates, so a rendered Expiration is never later than the real one.
const expirationLayout = "2006-01-02T15:04:05Z"

// containerJSON is the container-credentials endpoint's success body.
type containerJSON struct {
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string `json:"SecretAccessKey"`
	Token           string `json:"Token"`
	Expiration      string `json:"Expiration"`
	AccountID       string `json:"AccountId,omitempty"`
}

// imdsJSON is IMDS's security-credentials/<role> body. Go v2 refuses it
// unless Code is "Success".
type imdsJSON struct {
	Code            string `json:"Code"`
	LastUpdated     string `json:"LastUpdated"`
	Type            string `json:"Type"`
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string `json:"SecretAccessKey"`
	Token           string `json:"Token"`
	Expiration      string `json:"Expiration"`
}

// NewCredentials returns credentials with both response bodies rendered, as
// the cache stores them. issued is when they were obtained (IMDS's
// LastUpdated); expiration is when AWS stops accepting them. account may be
// empty.
//
// A Fetcher may return credentials built any way it likes; the cache renders
// (a copy of) anything not built by NewCredentials when it stores it.
func NewCredentials(akid, secret, token, account string, issued, expiration time.Time) *Credentials {
	c := &Credentials{
		AccessKeyID:     akid,
		SecretAccessKey: secret,
		SessionToken:    token,
		AccountID:       account,
		Issued:          issued,
		Expiration:      expiration,
	}
	c.render()
	return c
}

// rendered reports whether c's bodies are filled in.
func (c *Credentials) rendered() bool {
	return c.containerBody != nil && c.imdsBody != nil
}

// render fills in c's bodies from its fields. It writes to c, so it may only
// run before c is published to other goroutines.
func (c *Credentials) render() {
	exp := c.Expiration.UTC().Format(expirationLayout)
	// Marshalling a struct of strings cannot fail.
	c.containerBody, _ = json.Marshal(containerJSON{
		AccessKeyID:     c.AccessKeyID,
		SecretAccessKey: c.SecretAccessKey,
		Token:           c.SessionToken,
		Expiration:      exp,
		AccountID:       c.AccountID,
	})
	c.imdsBody, _ = json.Marshal(imdsJSON{
		Code:            "Success",
		LastUpdated:     c.Issued.UTC().Format(expirationLayout),
		Type:            "AWS-HMAC",
		AccessKeyID:     c.AccessKeyID,
		SecretAccessKey: c.SecretAccessKey,
		Token:           c.SessionToken,
		Expiration:      exp,
	})
}

// readyToStore returns a copy of c fit to publish, obtained at now: rendered
// (unless c already was), with Issued set to now if it was missing, and with
// expiresAt set. c is never modified: a Fetcher may hand the same value out
// more than once. Bodies already rendered are shared, being immutable.
func readyToStore(c *Credentials, now time.Time) *Credentials {
	cp := *c
	if cp.Issued.IsZero() {
		cp.Issued = now
	}
	if !c.rendered() || c.Issued.IsZero() {
		cp.render()
	}
	// Clients see Expiration in whole seconds, truncated: judge servability
	// by that same instant, or credentials could be served that the body
	// itself says have expired.
	cp.Expiration = c.Expiration.Truncate(time.Second) // also drops any monotonic reading
	cp.expiresAt = cp.Expiration
	return &cp
}
