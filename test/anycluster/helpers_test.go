package anycluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podcreds/podcreds/internal/testkit/testenv"
)

// kubeconfig writes an admin kubeconfig for the test's processes.
func kubeconfig(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := env.WriteKubeconfig(p, ""); err != nil {
		t.Fatal(err)
	}
	return p
}

// result is what one podcreds invocation did.
type result struct {
	code           int
	stdout, stderr string
}

// podcreds runs the binary with args and the given extra environment.
func podcreds(t *testing.T, extraEnv []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, podcredsBin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, extraEnv...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errOut.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("podcreds %v: %v", args, err)
	}
	t.Logf("podcreds %s → exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

// writerEnv is the environment of a publisher allowed to write the bucket.
func writerEnv(t *testing.T) []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + env.Public.RootUser, "AWS_SECRET_ACCESS_KEY=" + env.Public.RootPassword,
		"AWS_CA_BUNDLE=" + env.Public.CAFile, "KUBECONFIG=" + kubeconfig(t),
	}
}

// bucketFlags are the publish flags for the environment's issuer bucket.
func bucketFlags() []string {
	return []string{"--public-url=" + env.Public.URL, "--bucket=" + testenv.IssuerBucket,
		"--s3-endpoint=" + env.Public.Endpoint, "--s3-path-style", "--s3-region=" + testenv.Region, "--log-format=console"}
}

// publishOnce runs `podcreds issuer publish --once` and requires success.
func publishOnce(t *testing.T, extra ...string) result {
	t.Helper()
	r := podcreds(t, writerEnv(t), append(append([]string{"issuer", "publish", "--once"}, bucketFlags()...), extra...)...)
	if r.code != 0 {
		t.Fatalf("publish --once failed (exit %d): %s", r.code, r.stderr)
	}
	return r
}

// publicGet fetches a path beneath the issuer anonymously over https, as
// AWS would.
func publicGet(t *testing.T, path string) (int, http.Header, []byte) {
	t.Helper()
	hc, err := env.PublicHTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	res, err := hc.Get(env.Public.URL + "/" + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, b
}

// publishedKids returns the kids of the public JWKS.
func publishedKids(t *testing.T) []string {
	t.Helper()
	code, _, b := publicGet(t, "openid/v1/jwks")
	if code != http.StatusOK {
		t.Fatalf("public JWKS answered %d: %s", code, b)
	}
	return kidsOf(t, b)
}

// servedKids returns the kids the API server serves now.
func servedKids(t *testing.T) []string {
	t.Helper()
	raw, err := env.Client.Discovery().RESTClient().Get().AbsPath("/openid/v1/jwks").DoRaw(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return kidsOf(t, raw)
}

// rootS3 is the bucket host with write access, for tests that break things.
func rootS3() *s3.Client {
	return env.IssuerS3Client(credentials.NewStaticCredentialsProvider(env.Public.RootUser, env.Public.RootPassword, ""))
}

func putObject(t *testing.T, key string, body []byte) {
	t.Helper()
	_, err := rootS3().PutObject(context.Background(), &s3.PutObjectInput{
		Bucket: aws.String(testenv.IssuerBucket), Key: aws.String(key), Body: bytes.NewReader(body), ContentType: aws.String("application/json"),
	})
	if err != nil {
		t.Fatal(err)
	}
}

func getObject(t *testing.T, key string) []byte {
	t.Helper()
	out, err := rootS3().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(testenv.IssuerBucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer out.Body.Close()
	b, _ := io.ReadAll(out.Body)
	return b
}

// token mints a ServiceAccount token for STS.
func token(t *testing.T, ns, sa string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := env.Client.CoreV1().ServiceAccounts(ns).Get(ctx, sa, metav1.GetOptions{}); err != nil {
		if _, err := env.CreateServiceAccount(ctx, ns, sa, nil); err != nil {
			t.Fatal(err)
		}
	}
	exp := int64(3600)
	tr, err := env.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{testenv.Audience}, ExpirationSeconds: &exp},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// kidOf returns a token's key id.
func kidOf(t *testing.T, tok string) string {
	t.Helper()
	header, _, _ := strings.Cut(tok, ".")
	b, err := decodeSegment(header)
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}

func rsaKey(t *testing.T) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func decodeSegment(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

// published makes sure the issuer is published and the public-issuer STS
// runs, whichever test comes first.
func published(t *testing.T) {
	t.Helper()
	publishOnce(t)
	if env.STSEndpoint == "" {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := env.StartPublicSTS(ctx); err != nil {
			t.Fatalf("STS on the public discovery URL: %v", err)
		}
	}
}

// jwkOf is the public JWK of key.
func jwkOf(t *testing.T, key *rsa.PrivateKey, kid string) map[string]any {
	return map[string]any{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
		"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes())}
}

// readOnlyCredentials asks the bucket host's own STS (AssumeRole with the
// root user and a session policy) for credentials that may only read.
func readOnlyCredentials(t *testing.T) (string, string, string) {
	t.Helper()
	hc, err := env.PublicHTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	c := sts.New(sts.Options{Region: testenv.Region, BaseEndpoint: aws.String(env.Public.Endpoint), HTTPClient: hc,
		Credentials: credentials.NewStaticCredentialsProvider(env.Public.RootUser, env.Public.RootPassword, "")})
	policy := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::oidc/*"]}]}`
	out, err := c.AssumeRole(context.Background(), &sts.AssumeRoleInput{
		RoleArn: aws.String("arn:xxx:xxx:xxx:xxxx"), RoleSessionName: aws.String("read-only"),
		Policy: aws.String(policy), DurationSeconds: aws.Int32(900),
	})
	if err != nil {
		t.Fatalf("read-only credentials from the bucket host: %v", err)
	}
	return aws.ToString(out.Credentials.AccessKeyId), aws.ToString(out.Credentials.SecretAccessKey), aws.ToString(out.Credentials.SessionToken)
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

// runUnprivileged runs podcreds as a user the file system's permissions
// apply to: nobody (65534) when the test runs as root, which ignores them;
// the test's own user otherwise.
func runUnprivileged(t *testing.T, args ...string) result {
	t.Helper()
	shared := sharedDir(t)
	bin := filepath.Join(shared, "podcreds")
	b, err := os.ReadFile(podcredsBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	kc := filepath.Join(shared, "kubeconfig")
	if err := env.WriteKubeconfig(kc, ""); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(kc, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + shared, "KUBECONFIG=" + kc}
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	r := result{stdout: out.String(), stderr: errOut.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("podcreds %v: %v", args, err)
	}
	t.Logf("podcreds %s (unprivileged) → exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

// sharedDir is one directory per test that every user may enter (t.TempDir
// is private to the test's user).
func sharedDir(t *testing.T) string {
	t.Helper()
	name := "podcreds-anycluster-" + strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	dir := filepath.Join(os.TempDir(), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func deleteObject(t *testing.T, key string) {
	t.Helper()
	_, err := rootS3().DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(testenv.IssuerBucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
}

// kidsOf returns the kids of a JWKS document.
func kidsOf(t *testing.T, jwks []byte) []string {
	t.Helper()
	var doc struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &doc); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range doc.Keys {
		kids = append(kids, k.Kid)
	}
	return kids
}
