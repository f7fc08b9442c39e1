package tokenreq

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// STSClient is the one STS operation podcreds needs. *sts.Client implements
// it; tests use a hand-written fake. Keeping it this small keeps the rest of
// the SDK out of everything but NewSTSClient.
type STSClient interface {
	AssumeRoleWithWebIdentity(ctx context.Context, params *sts.AssumeRoleWithWebIdentityInput,
		optFns ...func(*sts.Options)) (*sts.AssumeRoleWithWebIdentityOutput, error)
}

var _ STSClient = (*sts.Client)(nil)

// stsMaxAttempts is how many times the SDK itself sends one
// AssumeRoleWithWebIdentity call: once, no SDK retries.
//
// Retrying is the credentials cache's job. It keeps serving the credentials
// it has while it retries with backoff and jitter, and it coalesces all the
// pods that wait on one entry into one fetch; a pod with nothing to serve
// gets a 503 with Retry-After, and every SDK retries that on its own
// schedule. SDK retries underneath would stack a second backoff (up to 20 s)
// on top of ours, hold a coalesced fetch far past the 1–2 s the clients wait,
// and multiply the calls we make to an STS that is already throttling us.
const stsMaxAttempts = 1

// NewSTSClient returns an STS client for AssumeRoleWithWebIdentity.
//
// The client is anonymous: AssumeRoleWithWebIdentity is authenticated by the
// web identity token in its body, not by a request signature, so podcreds
// needs no AWS credentials of its own and never looks for any (no
// environment, shared config or IMDS lookups; on a node, IMDS might even be
// podcreds itself).
//
// region picks the regional STS endpoint (sts.<region>.amazonaws.com). A
// non-empty endpoint replaces the endpoint altogether, for VPC endpoints or an
// STS-compatible server such as MinIO; region may then be empty.
// httpClient may be nil for the SDK's default; pass one with a timeout so a
// hung STS cannot hold a fetch for long. The SDK makes one attempt per call
// (see stsMaxAttempts).
func NewSTSClient(region, endpoint string, httpClient sts.HTTPClient) *sts.Client {
	opts := sts.Options{
		Region:      region,
		Credentials: aws.AnonymousCredentials{},
		AppID:       "podcreds",
		Retryer:     retry.AddWithMaxAttempts(retry.NewStandard(), stsMaxAttempts),
	}
	if httpClient != nil {
		opts.HTTPClient = httpClient
	}
	if endpoint != "" {
		opts.BaseEndpoint = aws.String(endpoint)
	}
	return sts.New(opts)
}
