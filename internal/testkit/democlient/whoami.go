package democlient

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
)

// Whoami returns the subject ("sub" claim) of a session token that is a JWT,
// as MinIO's are: for credentials from AssumeRoleWithWebIdentity it is the web
// identity's subject, e.g. system:serviceaccount:demo:app. The signature is
// not checked — this only reads who the credentials say they are, to show it.
//
// AWS's own session tokens are opaque, and Whoami says so with an error. No
// error includes any part of the token.
func Whoami(sessionToken string) (string, error) {
	if sessionToken == "" {
		return "", errors.New("the credentials carry no session token")
	}
	parts := strings.Split(sessionToken, ".")
	if len(parts) != 3 {
		return "", errors.New("the session token is not a JWT (opaque, as AWS STS's are)")
	}
	// JWTs use unpadded base64url; tolerate padding from lax encoders.
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return "", errors.New("the session token looks like a JWT but its payload is not base64url")
	}
	var claims struct {
		Sub any `json:"sub"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return "", errors.New("the session token looks like a JWT but its payload is not a JSON object")
	}
	sub, ok := claims.Sub.(string)
	switch {
	case claims.Sub == nil:
		return "", errors.New("the session token is a JWT without a sub claim")
	case !ok || sub == "":
		return "", errors.New("the session token is a JWT whose sub claim is not a non-empty string")
	}
	return sub, nil
}
