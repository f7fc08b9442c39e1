package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/podcreds/podcreds/netsetup"
)

func TestUninstallNode(t *testing.T) {
	for _, tc := range []struct {
		name      string
		args      []string
		res       *netsetup.Uninstalled
		err       error
		code      int
		wantIface string
		out, msg  string
	}{
		{"removes both and says so", nil, &netsetup.Uninstalled{Tables: true, Interface: "podcreds0"}, nil, 0, "podcreds0",
			"removed the IMDS redirect and the connection cap (nftables tables ip and ip6 podcreds)\nremoved interface podcreds0\n", ""},
		{"a node with nothing installed is fine", []string{"--link-interface=pc1"}, &netsetup.Uninstalled{}, nil, 0, "pc1",
			"nothing to remove: no nftables tables podcreds and no interface pc1\n", ""},
		{"a failure exits 1 with the reason", nil, &netsetup.Uninstalled{Tables: true}, errors.New("interface podcreds0 is a bridge device"), 1, "podcreds0",
			"removed the IMDS redirect and the connection cap (nftables tables ip and ip6 podcreds)\n", "is a bridge device"},
		{"stray arguments exit 2", []string{"now"}, nil, nil, 2, "", "", "unexpected arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			var gotIface string
			code := uninstallNode(tc.args, &stdout, &stderr, func(_ context.Context, iface string) (*netsetup.Uninstalled, error) {
				gotIface = iface
				return tc.res, tc.err
			})
			if code != tc.code || gotIface != tc.wantIface || stdout.String() != tc.out || !strings.Contains(stderr.String(), tc.msg) {
				t.Fatalf("exit %d, interface %q, stdout %q, stderr %q; want %d, %q, %q, stderr containing %q",
					code, gotIface, stdout.String(), stderr.String(), tc.code, tc.wantIface, tc.out, tc.msg)
			}
		})
	}
}
