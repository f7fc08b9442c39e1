package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podcreds/podcreds/agent"
	"github.com/podcreds/podcreds/netsetup"
)

func TestUninstallNode(t *testing.T) {
	for _, tc := range []struct {
		name      string
		args      []string
		res       *netsetup.Uninstalled
		err       error
		keyFile   bool // a key file exists and -imds-key-file names it
		code      int
		wantIface string
		out, msg  string
	}{
		{"removes both and says so", nil, &netsetup.Uninstalled{Tables: true, Interface: "podcreds0"}, nil, false, 0, "podcreds0",
			"removed the IMDS redirect and the connection cap (nftables tables ip and ip6 podcreds)\nremoved interface podcreds0\n", ""},
		{"removes the key file it is named", nil, &netsetup.Uninstalled{Tables: true}, nil, true, 0, "podcreds0",
			"removed the IMDS redirect and the connection cap (nftables tables ip and ip6 podcreds)\nremoved the IMDS token key KEY\n", ""},
		{"a key file alone is something to remove", nil, &netsetup.Uninstalled{}, nil, true, 0, "podcreds0",
			"removed the IMDS token key KEY\n", ""},
		{"a node with nothing installed is fine", []string{"--link-interface=pc1"}, &netsetup.Uninstalled{}, nil, false, 0, "pc1",
			"nothing to remove: no nftables tables podcreds and no interface pc1\n", ""},
		{"a failure exits 1 with the reason and keeps the key", nil, &netsetup.Uninstalled{Tables: true}, errors.New("interface podcreds0 is a bridge device"), true, 1, "podcreds0",
			"removed the IMDS redirect and the connection cap (nftables tables ip and ip6 podcreds)\n", "is a bridge device"},
		{"stray arguments exit 2", []string{"now"}, nil, nil, false, 2, "", "", "unexpected arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			var gotIface string
			args, key := tc.args, filepath.Join(t.TempDir(), "imds-token.key")
			if tc.keyFile {
				if _, err := agent.LoadIMDSKey(key); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--imds-key-file="+key)
			}
			code := uninstallNode(args, &stdout, &stderr, func(_ context.Context, iface string) (*netsetup.Uninstalled, error) {
				gotIface = iface
				return tc.res, tc.err
			}, agent.RemoveIMDSKey)
			if _, err := os.Lstat(key); tc.keyFile && (err == nil) != (tc.code != 0) {
				t.Errorf("after exit %d the key file exists: %v", code, err == nil)
			}
			out := strings.ReplaceAll(stdout.String(), key, "KEY")
			if code != tc.code || gotIface != tc.wantIface || out != tc.out || !strings.Contains(stderr.String(), tc.msg) {
				t.Fatalf("exit %d, interface %q, stdout %q, stderr %q; want %d, %q, %q, stderr containing %q",
					code, gotIface, out, stderr.String(), tc.code, tc.wantIface, tc.out, tc.msg)
			}
		})
	}
}
