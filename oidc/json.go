package oidc

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// b64 decodes the parts of a compact JWS: base64url, no padding, and
// (Strict) no stray bits in the last character, so that one token has
// exactly one spelling.
var b64 = base64.RawURLEncoding.Strict()

// object is a JSON object's members by exact name.
type object map[string]json.RawMessage

// decodeObject parses a JSON object whose member names are unique. It exists
// because encoding/json, decoding into a struct, matches member names
// case-insensitively and keeps the last of duplicates; here names match
// exactly and a duplicate is an error, so no two readers of the same bytes
// can disagree about what they say.
func decodeObject(b []byte) (object, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	obj := object{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errors.New("invalid JSON object")
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errors.New("invalid JSON object")
		}
		if _, dup := obj[name]; dup {
			return nil, fmt.Errorf("duplicate member %s", quote(name))
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, errors.New("invalid JSON value")
		}
		obj[name] = raw
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, errors.New("invalid JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return obj, nil
}

// has reports whether the object has member name (even if it is null).
func (o object) has(name string) bool {
	_, ok := o[name]
	return ok
}

// str returns member name as a string; present is false if it is absent,
// and err is set if it is present but not a string (null included).
func (o object) str(name string) (s string, present bool, err error) {
	raw, ok := o[name]
	if !ok {
		return "", false, nil
	}
	if len(raw) == 0 || raw[0] != '"' {
		return "", true, fmt.Errorf("%s is not a string", name)
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", true, fmt.Errorf("%s is not a string", name)
	}
	return s, true, nil
}
