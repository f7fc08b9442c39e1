package issuer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// DirTarget writes the documents under a directory, for users who serve the
// files from their own web server: <dir>/.well-known/openid-configuration
// and the JWKS at its path beneath the issuer. The web server must send them
// as application/json.
type DirTarget struct{ Dir string }

// NewDirTarget checks that dir exists and is a directory.
func NewDirTarget(dir string) (*DirTarget, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("publish directory: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("publish directory %s is not a directory", dir)
	}
	return &DirTarget{Dir: dir}, nil
}

func (d *DirTarget) path(name string) (string, error) {
	if err := checkRelPath(name); err != nil {
		return "", err
	}
	return filepath.Join(d.Dir, filepath.FromSlash(name)), nil
}

// Get reads a file.
func (d *DirTarget) Get(_ context.Context, name string) ([]byte, error) {
	p, err := d.path(name)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		// A file where a directory should be: nothing is published there;
		// writing will say what is in the way.
		return nil, ErrNotFound
	}
	return b, err
}

// Put writes a temporary file beside the target and renames it over it, so
// a web server never serves half a document. Files are world-readable (the
// documents are public).
func (d *DirTarget) Put(_ context.Context, name string, body []byte) error {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("publish %s: %w (the publisher needs write access to %s)", name, err, d.Dir)
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-"+filepath.Base(p)+"-*")
	if err != nil {
		return fmt.Errorf("publish %s: %w (the publisher needs write access to %s)", name, err, d.Dir)
	}
	tmp := f.Name()
	_, werr := f.Write(body)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr, os.Chmod(tmp, 0o644)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("publish %s: %w", name, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("publish %s: %w", name, err)
	}
	return nil
}

func (d *DirTarget) String() string { return "directory " + d.Dir }
