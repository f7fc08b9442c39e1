package issuer

import (
	"context"
	"errors"
)

// Content-Type and Cache-Control of every published document. IAM caches
// JWKS on its own schedule; a short max-age keeps CDNs and proxies in front
// of a bucket from adding much to it during a rotation.
const (
	ContentType  = "application/json"
	CacheControl = "max-age=300"
)

// ErrNotFound is what Target.Get returns for an object that does not exist.
var ErrNotFound = errors.New("object not found")

// Target is where the documents go: an S3 bucket or a directory. Names are
// slash-separated paths relative to the issuer URL ("openid/v1/jwks").
type Target interface {
	// Get returns an object's content, or ErrNotFound.
	Get(ctx context.Context, name string) ([]byte, error)
	// Put writes an object whole, with ContentType and CacheControl, so a
	// reader sees either the old or the new content, never a mix.
	Put(ctx context.Context, name string, body []byte) error
	// String names the target for logs and errors.
	String() string
}
