package integration

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ktypes "k8s.io/apimachinery/pkg/types"

	"github.com/podcreds/podcreds/internal/testkit/testenv"
)

// TestChainWithoutAgent walks the path podcreds automates, by hand, on the
// real API server and MinIO: a pod-bound TokenRequest, the STS exchange, and
// S3 with the temporary credentials. If this fails, nothing built on it can
// pass.
func TestChainWithoutAgent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const ns, saName, node = "chain", "app", "node-a"
	if _, err := env.CreateServiceAccount(ctx, ns, saName, map[string]string{testenv.RoleAnnotation: env.RoleARN}); err != nil {
		t.Fatal(err)
	}
	pod, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "app-1", ServiceAccount: saName, Node: node, IP: netip.MustParseAddr("127.0.10.1")})
	if err != nil {
		t.Fatal(err)
	}
	if pod.Status.PodIP != "127.0.10.1" || pod.Spec.NodeName != node {
		t.Fatalf("pod not bound as the kubelet would report it: ip %q node %q", pod.Status.PodIP, pod.Spec.NodeName)
	}

	sa, err := env.Client.CoreV1().ServiceAccounts(ns).Get(ctx, saName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	roleARN := sa.Annotations[testenv.RoleAnnotation]
	token := requestToken(ctx, t, ns, saName, testenv.Audience, pod.Name, string(pod.UID))

	claims := decodeClaims(t, token)
	k8s, _ := claims["kubernetes.io"].(map[string]any)
	podClaim, _ := k8s["pod"].(map[string]any)
	nodeClaim, _ := k8s["node"].(map[string]any)
	if claims["iss"] != env.IssuerURL || podClaim["uid"] != string(pod.UID) || podClaim["name"] != pod.Name || nodeClaim["name"] != node {
		t.Fatalf("token claims do not bind it to the pod: iss=%v pod=%v node=%v", claims["iss"], podClaim, nodeClaim)
	}

	t.Run("STS exchanges a pod-bound token and S3 accepts the credentials", func(t *testing.T) {
		out, err := env.STSClient().AssumeRoleWithWebIdentity(ctx, &sts.AssumeRoleWithWebIdentityInput{
			RoleArn:          aws.String(roleARN),
			RoleSessionName:  aws.String("chain-app"),
			WebIdentityToken: aws.String(token),
			DurationSeconds:  aws.Int32(900),
		})
		if err != nil {
			t.Fatalf("AssumeRoleWithWebIdentity: %v", err)
		}
		c := out.Credentials
		if c == nil || aws.ToString(c.AccessKeyId) == "" || aws.ToString(c.SessionToken) == "" || c.Expiration == nil {
			t.Fatalf("incomplete credentials: %+v", c)
		}
		if left := time.Until(*c.Expiration); left < 10*time.Minute || left > 16*time.Minute {
			t.Errorf("credentials live %s, asked for 15m", left)
		}
		client := env.S3Client(credentials.NewStaticCredentialsProvider(*c.AccessKeyId, *c.SecretAccessKey, *c.SessionToken))
		bucket, key, body := "chain", "hello.txt", []byte("podcreds chain "+time.Now().String())
		if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
			t.Fatalf("CreateBucket: %v", err)
		}
		if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(body)}); err != nil {
			t.Fatalf("PutObject: %v", err)
		}
		got, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
		if err != nil {
			t.Fatalf("GetObject: %v", err)
		}
		defer got.Body.Close()
		if b, _ := io.ReadAll(got.Body); !bytes.Equal(b, body) {
			t.Fatalf("GetObject returned %q, want %q", b, body)
		}
	})

	refused := []struct {
		name  string
		token func(t *testing.T) string
	}{
		{"STS refuses a token for another audience", func(t *testing.T) string {
			return requestToken(ctx, t, ns, saName, "not-sts.example", pod.Name, string(pod.UID))
		}},
		{"STS refuses a token signed by a different key", func(t *testing.T) string {
			return resign(t, token)
		}},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			_, err := env.STSClient().AssumeRoleWithWebIdentity(ctx, &sts.AssumeRoleWithWebIdentityInput{
				RoleArn:          aws.String(roleARN),
				RoleSessionName:  aws.String("chain-app"),
				WebIdentityToken: aws.String(tc.token(t)),
				DurationSeconds:  aws.Int32(900),
			})
			var apiErr smithy.APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("want an STS API error, got %v", err)
			}
			// MinIO answers InvalidParameterValue (AWS: InvalidIdentityToken).
			if code := apiErr.ErrorCode(); code != "InvalidParameterValue" && code != "InvalidIdentityToken" && code != "AccessDenied" {
				t.Fatalf("refused with %q (%s), want an identity-token refusal", code, apiErr.ErrorMessage())
			}
		})
	}
}

func requestToken(ctx context.Context, t *testing.T, ns, sa, audience, podName, podUID string) string {
	t.Helper()
	tr, err := env.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			Audiences:         []string{audience},
			ExpirationSeconds: aws.Int64(600),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: podName, UID: ktypes.UID(podUID)},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest: %v", err)
	}
	return tr.Status.Token
}

func decodeClaims(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(b, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

// resign keeps a real token's header (kid included) and claims but signs
// them with a fresh key: only the signature is wrong.
func resign(t *testing.T, jwt string) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	signed := jwt[:strings.LastIndexByte(jwt, '.')]
	sum := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	forged := signed + "." + base64.RawURLEncoding.EncodeToString(sig)
	if forged == jwt {
		t.Fatal("forged token equals the real one")
	}
	return forged
}
