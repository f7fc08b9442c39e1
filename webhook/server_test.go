package webhook

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"go.uber.org/zap"
)

// TestServerLifecycle: the server is ready once its informer has synced,
// answers reviews over TLS with the mounted certificate, serves its metrics,
// and stops everything it started when its context ends.
func TestServerLifecycle(t *testing.T) {
	defer goleak.VerifyNone(t)
	dir := t.TempDir()
	writePair(t, dir, "127.0.0.1")
	srv, err := New(Options{
		API: &liveAPI{}, Listen: "127.0.0.1:0", CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"),
		HealthAddr: "127.0.0.1:0", MetricsAddr: "127.0.0.1:0", Registry: prometheus.NewRegistry(),
		Settings: testSettings, Logger: zap.NewNop(), ShutdownTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatalf("Run returned before ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready")
	}

	plain := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(url string) (int, string) {
		t.Helper()
		res, err := plain.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, _ := get("http://" + srv.HealthAddr().String() + "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz %d after Ready", code)
	}

	crt, _ := os.ReadFile(filepath.Join(dir, "tls.crt"))
	block, _ := pem.Decode(crt)
	// The test certificate names no address: check that the served one is
	// the mounted one instead of the chain and name.
	secure := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || string(raw[0]) != string(block.Bytes) {
				t.Error("the server presented another certificate than the mounted one")
			}
			return nil
		}}}}
	res, err := secure.Post("https://"+srv.Addr().String()+Path, "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "AdmissionReview") {
		t.Errorf("an empty object over TLS: %d %q", res.StatusCode, b)
	}
	if _, body := get("http://" + srv.metrics.Addr().String() + "/metrics"); !strings.Contains(body, `podcreds_webhook_admissions_total{result="badrequest"} 1`) {
		t.Errorf("/metrics does not count the bad request:\n%s", body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
