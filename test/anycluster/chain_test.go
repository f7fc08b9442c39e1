package anycluster

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/podcreds/podcreds/agent"
	"github.com/podcreds/podcreds/agent/stack"
	"github.com/podcreds/podcreds/internal/testkit/testenv"
	"github.com/podcreds/podcreds/kube"
)

// TestPublishedIssuerWholeChain: the issuer is published by `podcreds issuer
// publish --once`, the STS trusts only the public URL, and the agent serves
// a pod credentials that work on S3.
func TestPublishedIssuerWholeChain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Before publishing (documents another test published are removed),
	// the public URL has nothing AWS could trust.
	for _, k := range []string{".well-known/openid-configuration", "openid/v1/jwks", "podcreds-issuer-state.json"} {
		deleteObject(t, k)
	}
	if code, _, _ := publicGet(t, ".well-known/openid-configuration"); code == http.StatusOK {
		t.Fatal("the discovery document is public before anything published it")
	}
	r := publishOnce(t)
	if !strings.Contains(r.stdout, "published "+env.Public.URL) {
		t.Fatalf("publish --once printed %q", r.stdout)
	}

	t.Run("both documents are public, JSON and short-cached", func(t *testing.T) {
		for _, p := range []string{".well-known/openid-configuration", "openid/v1/jwks"} {
			code, h, b := publicGet(t, p)
			if code != http.StatusOK || h.Get("Content-Type") != "application/json" || !strings.HasPrefix(h.Get("Cache-Control"), "max-age=") {
				t.Fatalf("GET %s: %d, Content-Type %q, Cache-Control %q: %s", p, code, h.Get("Content-Type"), h.Get("Cache-Control"), b)
			}
		}
		_, _, b := publicGet(t, ".well-known/openid-configuration")
		var d struct{ Issuer, JWKSURI string }
		_ = json.Unmarshal(b, &struct {
			Issuer  *string `json:"issuer"`
			JWKSURI *string `json:"jwks_uri"`
		}{&d.Issuer, &d.JWKSURI})
		if d.Issuer != env.Public.URL || d.JWKSURI != env.Public.URL+"/openid/v1/jwks" {
			t.Fatalf("published discovery: issuer %q jwks_uri %q", d.Issuer, d.JWKSURI)
		}
		if got, want := publishedKids(t), servedKids(t); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("published kids %v, API server serves %v", got, want)
		}
		// The publisher's memory is not among the public objects.
		if code, _, _ := publicGet(t, "podcreds-issuer-state.json"); code == http.StatusOK {
			t.Fatal("the state object is publicly readable; the bucket policy should allow only the two documents")
		}
	})

	t.Run("an unchanged API server makes the next publish write nothing", func(t *testing.T) {
		if r := publishOnce(t); !strings.Contains(r.stdout, "written []") {
			t.Fatalf("second publish wrote something: %s", r.stdout)
		}
	})

	// The STS trusts the public URL only; it starts by exchanging a token.
	published(t)

	t.Run("the agent serves a pod credentials that work on S3", func(t *testing.T) {
		const ns, sa, node = "chain", "app", "node-chain"
		if _, err := env.CreateServiceAccount(ctx, ns, sa, map[string]string{testenv.RoleAnnotation: env.RoleARN}); err != nil {
			t.Fatal(err)
		}
		ip := netip.MustParseAddr("127.0.50.1")
		if _, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "app-1", ServiceAccount: sa, Node: node, IP: ip}); err != nil {
			t.Fatal(err)
		}
		url := startAgent(t, node)
		creds := getCredentials(t, url, ip)
		s3c := env.S3Client(credentials.NewStaticCredentialsProvider(creds["AccessKeyId"], creds["SecretAccessKey"], creds["Token"]))
		if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("anycluster")}); err != nil {
			t.Fatalf("create bucket with the pod's credentials: %v", err)
		}
		body := []byte("published issuer, no hand-made trust")
		if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("anycluster"), Key: aws.String("hello"), Body: bytes.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
		out, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("anycluster"), Key: aws.String("hello")})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(out.Body)
		out.Body.Close()
		if !bytes.Equal(got, body) {
			t.Fatalf("read back %q", got)
		}
	})
}

// startAgent runs the agent as cmd/podcreds wires it, for node, with the
// public-issuer STS, and returns its credentials URL.
func startAgent(t *testing.T, node string) string {
	t.Helper()
	client, err := kube.New(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	st, err := stack.Build(stack.Options{
		Client: client, STS: env.STSClient(), SessionDuration: 15 * time.Minute,
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)),
		Agent: agent.Options{
			NodeName: node, TokenMode: agent.TokenOff, Listeners: []agent.Listener{{Addr: "127.0.0.1:0"}},
			ShutdownTimeout: 5 * time.Second, DefaultAudience: testenv.Audience, DefaultTokenExpiration: time.Hour,
			UnknownPodWait: time.Second,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- st.Agent.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
		st.Close()
	})
	deadline := time.Now().Add(30 * time.Second)
	for !st.Agent.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("agent not ready after 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "http://" + st.Agent.Addrs()[0].String() + "/v1/credentials"
}

// getCredentials asks the agent from ip, as the pod's SDK would.
func getCredentials(t *testing.T, url string, ip netip.Addr) map[string]string {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip.AsSlice()}, Timeout: 5 * time.Second}
	hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}, Timeout: 20 * time.Second}
	res, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body map[string]string
	b, _ := io.ReadAll(res.Body)
	if err := json.Unmarshal(b, &body); err != nil || res.StatusCode != http.StatusOK || body["AccessKeyId"] == "" {
		t.Fatalf("credentials: status %d, body %s", res.StatusCode, b)
	}
	return body
}
