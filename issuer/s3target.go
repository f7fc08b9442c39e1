package issuer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// S3API is the part of the S3 client the publisher uses.
type S3API interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
}

// S3Target writes the documents to a bucket, under Prefix (empty, or a path
// ending in "/"). The objects' public readability is the bucket policy's
// job (docs/any-cluster.md); the publisher sets no ACLs.
type S3Target struct {
	Client S3API
	Bucket string
	Prefix string
}

// NewS3Target checks bucket and prefix.
func NewS3Target(client S3API, bucket, prefix string) (*S3Target, error) {
	if bucket == "" {
		return nil, errors.New("no bucket")
	}
	if prefix != "" {
		if err := checkRelPath(strings.TrimSuffix(prefix, "/")); err != nil {
			return nil, fmt.Errorf("prefix: %w", err)
		}
		prefix = strings.TrimSuffix(prefix, "/") + "/"
	}
	return &S3Target{Client: client, Bucket: bucket, Prefix: prefix}, nil
}

func (t *S3Target) key(name string) (string, error) {
	if err := checkRelPath(name); err != nil {
		return "", err
	}
	return t.Prefix + name, nil
}

// Get reads an object.
func (t *S3Target) Get(ctx context.Context, name string) ([]byte, error) {
	key, err := t.key(name)
	if err != nil {
		return nil, err
	}
	out, err := t.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(t.Bucket), Key: aws.String(key)})
	if err != nil {
		var apiErr smithy.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode() == "NoSuchKey" || apiErr.ErrorCode() == "NotFound") {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("read s3://%s/%s: %w", t.Bucket, key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, maxDocumentBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read s3://%s/%s: %w", t.Bucket, key, err)
	}
	return b, nil
}

// Put writes an object.
func (t *S3Target) Put(ctx context.Context, name string, body []byte) error {
	key, err := t.key(name)
	if err != nil {
		return err
	}
	_, err = t.Client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(t.Bucket), Key: aws.String(key), Body: bytes.NewReader(body),
		ContentType: aws.String(ContentType), CacheControl: aws.String(CacheControl),
		ContentLength: aws.Int64(int64(len(body))),
	})
	if err != nil {
		return fmt.Errorf("write s3://%s/%s: %w (the publisher's identity needs s3:PutObject on it; see docs/any-cluster.md)", t.Bucket, key, err)
	}
	return nil
}

func (t *S3Target) String() string { return "s3://" + t.Bucket + "/" + t.Prefix }
