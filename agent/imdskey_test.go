package agent

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestIMDSKeyIsSharedByTheAgentsOfANode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "podcreds", "imds-token.key")
	// Two agents starting at once (the surge of an upgrade) agree on one key.
	keys := make([]*[IMDSKeySize]byte, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			k, err := LoadIMDSKey(path)
			if err != nil {
				t.Errorf("LoadIMDSKey: %v", err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, k := range keys[1:] {
		if *k != *keys[0] {
			t.Fatal("agents loading the key at once got different keys")
		}
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v (%v), want 0600", fi.Mode(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".imds-key-*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}

	// A token the old agent minted is valid under the new one: no 401 for
	// a pod holding it across the roll. A per-process key would refuse it.
	oldAgent, newAgent := newIMDSTokens(keys[0]), newIMDSTokens(keys[1])
	ip := netip.MustParseAddr("10.0.0.7")
	tok := oldAgent.mint(time.Now().Add(time.Hour), ip, "uid-7")
	if err := newAgent.check(tok, time.Now(), ip, "uid-7"); err != nil {
		t.Fatalf("the new agent refused the old agent's token: %v", err)
	}
	if err := newIMDSTokens(nil).check(tok, time.Now(), ip, "uid-7"); err == nil {
		t.Fatal("an agent with its own key accepted the token: the check proves nothing")
	}
}

func TestIMDSKeyFileOthersCanReadIsRefused(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, want string
		setup      func(path string) error
	}{
		{"readable by the group", "readable by its owner only", func(p string) error {
			return os.WriteFile(p, make([]byte, IMDSKeySize), 0o640)
		}},
		{"too short", "want 32 bytes", func(p string) error { return os.WriteFile(p, []byte("short"), 0o600) }},
		{"too long", "longer than 32 bytes", func(p string) error {
			return os.WriteFile(p, make([]byte, IMDSKeySize+1), 0o600)
		}},
		{"a symlink", "IMDS token key", func(p string) error {
			target := p + ".target"
			if err := os.WriteFile(target, make([]byte, IMDSKeySize), 0o600); err != nil {
				return err
			}
			return os.Symlink(target, p)
		}},
		{"a directory", "IMDS token key", func(p string) error { return os.Mkdir(p, 0o700) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			if err := tc.setup(path); err != nil {
				t.Fatal(err)
			}
			_, err := LoadIMDSKey(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadIMDSKey: %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

func TestRemoveIMDSKeyRemovesOnlyTheKey(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "imds-token.key")
	if _, err := LoadIMDSKey(key); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, ".imds-key-123") // a crashed agent's temporary file
	if err := os.WriteFile(stale, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if removed, err := RemoveIMDSKey(key); !removed || err != nil {
		t.Fatalf("RemoveIMDSKey = %v, %v; want true, nil", removed, err)
	}
	for _, p := range []string{key, stale} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is still there (%v)", p, err)
		}
	}
	if removed, err := RemoveIMDSKey(key); removed || err != nil {
		t.Fatalf("RemoveIMDSKey of a missing key = %v, %v; want false, nil", removed, err)
	}

	// A directory named by mistake is refused, and stays.
	if removed, err := RemoveIMDSKey(dir); removed || err == nil || !strings.Contains(err.Error(), "not a file") {
		t.Fatalf("RemoveIMDSKey(a directory) = %v, %v; want a refusal", removed, err)
	}
	// A symlink goes, and what it points to stays.
	target := filepath.Join(dir, "elsewhere")
	if err := os.WriteFile(target, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, key); err != nil {
		t.Fatal(err)
	}
	if removed, err := RemoveIMDSKey(key); !removed || err != nil {
		t.Fatalf("RemoveIMDSKey(a symlink) = %v, %v; want true, nil", removed, err)
	}
	if b, err := os.ReadFile(target); err != nil || string(b) != "keep" {
		t.Fatalf("the symlink's target: %q, %v; want it untouched", b, err)
	}
}
