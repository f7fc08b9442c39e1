package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"
)

// certReloader serves the certificate in a pair of mounted files and
// replaces it when they change, as cert-manager rotates a Secret and the
// kubelet updates the mounted files: no restart, no dropped connections.
// A pair that fails to load (a rotation caught halfway, between the two
// files) keeps the last good certificate in use until the next check.
type certReloader struct {
	certFile, keyFile string
	logger            *zap.Logger

	mu       sync.RWMutex
	cert     *tls.Certificate
	certPEM  []byte
	keyPEM   []byte
	reloaded int
}

func newCertReloader(certFile, keyFile string, logger *zap.Logger) (*certReloader, error) {
	c := &certReloader{certFile: certFile, keyFile: keyFile, logger: logger}
	if _, err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

// load reads the files and, if they differ from what is served, parses and
// swaps them in. It reports whether the certificate changed.
func (c *certReloader) load() (bool, error) {
	certPEM, err := os.ReadFile(c.certFile)
	if err != nil {
		return false, fmt.Errorf("TLS certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(c.keyFile)
	if err != nil {
		return false, fmt.Errorf("TLS key: %w", err)
	}
	c.mu.RLock()
	same := bytes.Equal(certPEM, c.certPEM) && bytes.Equal(keyPEM, c.keyPEM)
	c.mu.RUnlock()
	if same {
		return false, nil
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return false, fmt.Errorf("TLS key pair %s, %s: %w", c.certFile, c.keyFile, err)
	}
	c.mu.Lock()
	c.cert, c.certPEM, c.keyPEM = &cert, certPEM, keyPEM
	c.reloaded++
	c.mu.Unlock()
	return true, nil
}

// watch checks the files every interval until ctx ends. Polling two small
// files is cheaper to get right than inotify across the kubelet's symlink
// swaps of a Secret volume.
func (c *certReloader) watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			changed, err := c.load()
			switch {
			case err != nil:
				c.logger.Warn("cannot reload the TLS certificate; serving the previous one", zap.Error(err))
			case changed:
				c.logger.Info("reloaded the TLS certificate", zap.String("file", c.certFile))
			}
		}
	}
}

// GetCertificate is tls.Config.GetCertificate.
func (c *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cert, nil
}
