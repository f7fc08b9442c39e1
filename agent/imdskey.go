package agent

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// IMDSKeySize is the length of the key IMDS session tokens are HMAC'd with.
const IMDSKeySize = 32

// LoadIMDSKey returns the node's IMDS token key from path, creating it (with
// a random key) when it does not exist yet. Every agent on the node reads
// the same file, so a token minted by the agent being replaced stays valid
// under the one replacing it; a pod holding an IMDSv2 token sees no 401
// across an upgrade. The file lives on the node (a hostPath) and is never
// sent anywhere.
//
// Creation is atomic (written to a temporary file, then linked into place,
// which fails if another agent won the race; its key is then used), so two
// agents starting at once agree on one key. The file must be a regular file
// owned by this user and readable by nobody else: anything else is refused,
// since whoever reads the key can mint tokens for any pod on the node.
func LoadIMDSKey(path string) (*[IMDSKeySize]byte, error) {
	key, err := readIMDSKey(path)
	if !errors.Is(err, os.ErrNotExist) {
		return key, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("IMDS token key: create %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, ".imds-key-*")
	if err != nil {
		return nil, fmt.Errorf("IMDS token key: %w", err)
	}
	defer os.Remove(tmp.Name())
	var fresh [IMDSKeySize]byte
	if _, err := rand.Read(fresh[:]); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("IMDS token key: %w", err)
	}
	_, err = tmp.Write(fresh[:])
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("IMDS token key: write %s: %w", tmp.Name(), err)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("IMDS token key: create %s: %w", path, err)
	}
	return readIMDSKey(path)
}

func readIMDSKey(path string) (*[IMDSKeySize]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("IMDS token key %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("IMDS token key %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("IMDS token key %s: mode %s, want a regular file readable by its owner only (remove it and the agent makes a new one)", path, fi.Mode())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("IMDS token key %s: owned by uid %d, not the agent's %d (remove it and the agent makes a new one)", path, st.Uid, os.Geteuid())
	}
	var key [IMDSKeySize]byte
	n, err := io.ReadFull(f, key[:])
	if err != nil || n != IMDSKeySize {
		return nil, fmt.Errorf("IMDS token key %s: want %d bytes (remove it and the agent makes a new one): %v", path, IMDSKeySize, err)
	}
	if extra, _ := f.Read(make([]byte, 1)); extra != 0 {
		return nil, fmt.Errorf("IMDS token key %s: longer than %d bytes (remove it and the agent makes a new one)", path, IMDSKeySize)
	}
	return &key, nil
}

// RemoveIMDSKey deletes the node's IMDS token key at path, for `podcreds
// uninstall-node`: after it no file of the agent's is left on the node, and
// an agent installed later makes a new key. It reports whether there was a
// key to remove. It refuses to delete anything that is not a regular file
// (a directory or device given by mistake); a symlink is removed itself,
// never what it points to. Temporary files a crashed agent left beside the
// key (.imds-key-*) go too.
func RemoveIMDSKey(path string) (bool, error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		err = nil
	case err != nil:
		return false, fmt.Errorf("IMDS token key %s: %w", path, err)
	case !fi.Mode().IsRegular() && fi.Mode()&os.ModeSymlink == 0:
		return false, fmt.Errorf("IMDS token key %s is a %s, not a file: not removing it (check --imds-key-file)", path, fi.Mode().Type())
	default:
		if err := os.Remove(path); err != nil {
			return false, fmt.Errorf("IMDS token key %s: %w", path, err)
		}
	}
	stale, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".imds-key-*"))
	for _, s := range stale {
		_ = os.Remove(s)
	}
	return fi != nil, nil
}
