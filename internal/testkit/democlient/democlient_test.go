package democlient_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podcreds/podcreds/internal/testkit/democlient"
	"github.com/podcreds/podcreds/internal/testkit/testenv"
)

// TestRun drives Run against a stand-in for podcreds that serves real MinIO
// STS credentials over the container-credentials protocol, and against
// MinIO's S3 through a recording TCP proxy, so both halves of "the pod dials
// from its own IP" are observed.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns, sa = "democlient", "app"
	podIP := netip.MustParseAddr("127.0.100.20")
	creds := podCredentials(ctx, t, ns, sa, podIP)

	authToken := "demo-authorization-token"
	endpoint := serveCredentials(t, authToken, http.StatusOK, map[string]string{
		"AccessKeyId":     aws.ToString(creds.AccessKeyId),
		"SecretAccessKey": aws.ToString(creds.SecretAccessKey),
		"Token":           aws.ToString(creds.SessionToken),
		"Expiration":      creds.Expiration.UTC().Format(time.RFC3339),
	})
	s3Proxy := proxyTo(t, strings.TrimPrefix(env.S3Endpoint, "http://"))

	cleanEnv(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(authToken), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", endpoint.url)
	t.Setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", tokenFile)

	var out bytes.Buffer
	const bucket, key = "democlient", "hello.txt"
	err := democlient.Run(ctx, democlient.Options{
		SourceIP:   podIP,
		S3Endpoint: "http://" + s3Proxy.addr,
		Bucket:     bucket,
		Key:        key,
		Region:     testenv.Region,
		Out:        &out,
	})
	t.Logf("output:\n%s", &out)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}

	t.Run("the credentials request came from the pod's IP with the token from the file", func(t *testing.T) {
		reqs := endpoint.requests()
		if len(reqs) == 0 {
			t.Fatal("the credentials endpoint was never asked")
		}
		for _, r := range reqs {
			if r.from != podIP {
				t.Errorf("credentials request from %s, want %s", r.from, podIP)
			}
			if r.auth != authToken {
				t.Errorf("credentials request carried Authorization %q, want the token file's content", r.auth)
			}
		}
	})
	t.Run("every S3 connection came from the pod's IP", func(t *testing.T) {
		from := s3Proxy.sources()
		if len(from) == 0 {
			t.Fatal("no connection reached S3 through the proxy")
		}
		for _, ip := range from {
			if ip != podIP {
				t.Errorf("S3 connection from %s, want %s", ip, podIP)
			}
		}
	})
	t.Run("the output names the ServiceAccount and numbers its steps", func(t *testing.T) {
		text := out.String()
		for _, want := range []string{"1. credentials from " + endpoint.url, "2. identity: system:serviceaccount:" + ns + ":" + sa, "bucket " + bucket + ": created", "identical to what was put"} {
			if !strings.Contains(text, want) {
				t.Errorf("output lacks %q", want)
			}
		}
	})
	t.Run("the output holds no secret", func(t *testing.T) {
		text := out.String()
		for name, secret := range map[string]string{
			"secret access key": aws.ToString(creds.SecretAccessKey),
			"session token":     aws.ToString(creds.SessionToken),
			"whole access key":  aws.ToString(creds.AccessKeyId),
			"authorization":     authToken,
		} {
			if strings.Contains(text, secret) {
				t.Errorf("output contains the %s", name)
			}
		}
	})
	t.Run("the object is in S3", func(t *testing.T) {
		client := env.S3Client(credentials.NewStaticCredentialsProvider(*creds.AccessKeyId, *creds.SecretAccessKey, *creds.SessionToken))
		got, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err != nil {
			t.Fatalf("GetObject: %v", err)
		}
		defer got.Body.Close()
		if b, _ := io.ReadAll(got.Body); !strings.Contains(string(b), "system:serviceaccount:"+ns+":"+sa) {
			t.Fatalf("object holds %q", b)
		}
	})
	t.Run("a second run finds the bucket", func(t *testing.T) {
		out.Reset()
		err := democlient.Run(ctx, democlient.Options{SourceIP: podIP, S3Endpoint: env.S3Endpoint, Bucket: bucket, Key: key, Out: &out})
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if !strings.Contains(out.String(), "bucket "+bucket+": already exists") {
			t.Fatalf("output:\n%s", &out)
		}
	})
}

// TestRunFailures checks that Run stops with an error that says what went
// wrong, and leaks no secret into it.
func TestRunFailures(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	refusing := serveCredentials(t, "", http.StatusForbidden, map[string]string{
		"code": "AccessDenied", "message": "no role for this pod", "Code": "AccessDenied", "Message": "no role for this pod",
	})
	tests := []struct {
		name    string
		env     map[string]string
		bucket  string
		wantErr string
	}{
		{
			name:    "without a bucket",
			env:     map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": refusing.url},
			wantErr: "no bucket",
		},
		{
			name:    "without a container-credentials endpoint",
			bucket:  "b",
			wantErr: "AWS_CONTAINER_CREDENTIALS_FULL_URI is not set",
		},
		{
			name:    "when the endpoint refuses",
			env:     map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": refusing.url},
			bucket:  "b",
			wantErr: "no role for this pod",
		},
		{
			name: "when static keys in the environment shadow the endpoint",
			env: map[string]string{
				"AWS_CONTAINER_CREDENTIALS_FULL_URI": refusing.url,
				"AWS_ACCESS_KEY_ID":                  "AKIAIOSFODNN7EXAMPLE",
				"AWS_SECRET_ACCESS_KEY":              secret,
			},
			bucket:  "b",
			wantErr: "not the container-credentials endpoint",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cleanEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out bytes.Buffer
			err := democlient.Run(ctx, democlient.Options{SourceIP: netip.MustParseAddr("127.0.100.21"), S3Endpoint: env.S3Endpoint, Bucket: tc.bucket, Out: &out})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Run = %v, want an error containing %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error()+out.String(), secret) {
				t.Fatalf("the secret key leaked: %v\n%s", err, &out)
			}
		})
	}
}

// podCredentials runs a pod and exchanges a token bound to it for MinIO
// credentials, the work podcreds does for the pod.
func podCredentials(ctx context.Context, t *testing.T, ns, sa string, ip netip.Addr) *ststypes.Credentials {
	t.Helper()
	if _, err := env.CreateServiceAccount(ctx, ns, sa, map[string]string{testenv.RoleAnnotation: env.RoleARN}); err != nil {
		t.Fatal(err)
	}
	pod, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "app-1", ServiceAccount: sa, Node: "democlient-node", IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := env.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			Audiences:         []string{testenv.Audience},
			ExpirationSeconds: aws.Int64(600),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest: %v", err)
	}
	out, err := env.STSClient().AssumeRoleWithWebIdentity(ctx, &sts.AssumeRoleWithWebIdentityInput{
		RoleArn:          aws.String(env.RoleARN),
		RoleSessionName:  aws.String("democlient"),
		WebIdentityToken: aws.String(tr.Status.Token),
		DurationSeconds:  aws.Int32(900),
	})
	if err != nil {
		t.Fatalf("AssumeRoleWithWebIdentity: %v", err)
	}
	if out.Credentials == nil || out.Credentials.Expiration == nil {
		t.Fatalf("incomplete credentials: %+v", out.Credentials)
	}
	return out.Credentials
}

// cleanEnv hides the developer's AWS configuration from the SDK, so only what
// a test sets reaches the default chain.
func cleanEnv(t *testing.T) {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(home, "no-config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(home, "no-credentials"))
	for _, k := range []string{
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
	} {
		t.Setenv(k, "")
	}
}

type credRequest struct {
	from netip.Addr
	auth string
}

// credEndpoint is the stand-in for podcreds: it answers every request with
// one fixed body and remembers who asked.
type credEndpoint struct {
	url  string
	mu   sync.Mutex
	reqs []credRequest
}

func (e *credEndpoint) requests() []credRequest {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]credRequest(nil), e.reqs...)
}

// serveCredentials serves body as JSON with status on 127.0.0.1. When
// wantAuth is set, requests without it as Authorization get a 401.
func serveCredentials(t *testing.T, wantAuth string, status int, body map[string]string) *credEndpoint {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &credEndpoint{url: "http://" + l.Addr().String() + "/v1/credentials"}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		from, _ := netip.ParseAddrPort(r.RemoteAddr)
		e.mu.Lock()
		e.reqs = append(e.reqs, credRequest{from: from.Addr(), auth: r.Header.Get("Authorization")})
		e.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path != "/v1/credentials" || (wantAuth != "" && r.Header.Get("Authorization") != wantAuth) {
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(map[string]string{"code": "Unauthorized", "message": "wrong path or token"})
			return
		}
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(body)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return e
}

// tcpProxy forwards connections to a target and records their source
// addresses; being byte-for-byte, it leaves S3's request signatures intact.
type tcpProxy struct {
	addr string
	mu   sync.Mutex
	from []netip.Addr
}

func (p *tcpProxy) sources() []netip.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]netip.Addr(nil), p.from...)
}

func proxyTo(t *testing.T, target string) *tcpProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{addr: l.Addr().String()}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		conns  []net.Conn
		closed bool
	)
	// track keeps a connection for Cleanup to close, or closes it at once if
	// Cleanup already ran.
	track := func(cs ...net.Conn) bool {
		mu.Lock()
		defer mu.Unlock()
		if closed {
			for _, c := range cs {
				c.Close()
			}
			return false
		}
		conns = append(conns, cs...)
		return true
	}
	wg.Go(func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			from, _ := netip.ParseAddrPort(in.RemoteAddr().String())
			p.mu.Lock()
			p.from = append(p.from, from.Addr())
			p.mu.Unlock()
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			if !track(in, out) {
				return
			}
			wg.Go(func() { _, _ = io.Copy(out, in); out.(*net.TCPConn).CloseWrite() })
			wg.Go(func() { _, _ = io.Copy(in, out); in.(*net.TCPConn).CloseWrite() })
		}
	})
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		closed = true
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return p
}
