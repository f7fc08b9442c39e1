package webhook

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
)

func writePair(t *testing.T, dir, cn string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalPKCS8PrivateKey(key)
	_ = os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600)
}

func servedCN(t *testing.T, c *certReloader) string {
	t.Helper()
	cert, err := c.GetCertificate(nil)
	if err != nil || cert == nil {
		t.Fatalf("no certificate: %v", err)
	}
	x, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return x.Subject.CommonName
}

func TestCertificateReload(t *testing.T) {
	dir := t.TempDir()
	if _, err := newCertReloader(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), zap.NewNop()); err == nil {
		t.Fatal("started without certificate files")
	}
	writePair(t, dir, "first")
	c, err := newCertReloader(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if cn := servedCN(t, c); cn != "first" {
		t.Fatalf("serving %q", cn)
	}
	if changed, err := c.load(); changed || err != nil {
		t.Errorf("unchanged files reloaded: %v, %v", changed, err)
	}
	writePair(t, dir, "second")
	if changed, err := c.load(); !changed || err != nil {
		t.Fatalf("rotation not picked up: %v, %v", changed, err)
	}
	if cn := servedCN(t, c); cn != "second" {
		t.Errorf("after rotation serving %q", cn)
	}
	// A rotation caught halfway: a new certificate beside the old key.
	crt, _ := os.ReadFile(filepath.Join(dir, "tls.crt"))
	writePair(t, dir, "third")
	_ = os.WriteFile(filepath.Join(dir, "tls.crt"), crt, 0o600)
	if _, err := c.load(); err == nil {
		t.Error("a mismatched pair loaded")
	}
	if cn := servedCN(t, c); cn != "second" {
		t.Errorf("a failed reload replaced the certificate: serving %q", cn)
	}
}
