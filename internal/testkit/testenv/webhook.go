package testenv

import (
	"os"
	"path/filepath"
)

// ServingCert writes a certificate for 127.0.0.1 and localhost, and its key,
// into dir, for a test server the API server calls (an admission webhook). The
// certificate is its own CA: the returned PEM is the caBundle to register.
func ServingCert(dir string) (certFile, keyFile string, caPEM []byte, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", nil, err
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	caPEM, err = servingCert(certFile, keyFile)
	return certFile, keyFile, caPEM, err
}
