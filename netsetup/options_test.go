package netsetup

import (
	"net/netip"
	"strings"
	"testing"
)

func TestOptionsValidation(t *testing.T) {
	good := func() Options {
		return Options{
			Addresses: []netip.Prefix{ContainerAddr, ECSAddr, ContainerAddrV6},
			IMDS: &IMDSOptions{
				ListenAddr:    netip.MustParseAddrPort("169.254.170.23:8169"),
				PodInterfaces: DefaultPodInterfaces,
			},
		}
	}
	tests := []struct {
		name    string
		change  func(*Options)
		wantErr string // empty: valid
	}{
		{"the agent's defaults are valid", func(*Options) {}, ""},
		{"no IMDS is valid", func(o *Options) { o.IMDS = nil }, ""},
		{"no addresses is valid (the interface is emptied)", func(o *Options) { o.Addresses = nil }, ""},
		{"an exact pod interface name is valid", func(o *Options) { o.IMDS.PodInterfaces = []string{"eth0"} }, ""},
		{"an nft-style wildcard is valid", func(o *Options) { o.IMDS.PodInterfaces = []string{"veth*"} }, ""},
		{"a 16-byte interface name is refused", func(o *Options) { o.Interface = "podcreds-toolong" }, "longer than 15"},
		{"a slash in the interface name is refused", func(o *Options) { o.Interface = "pod/creds" }, "cannot have"},
		{"a space in the interface name is refused", func(o *Options) { o.Interface = "pod creds" }, "cannot have"},
		{"a range instead of a host address is refused", func(o *Options) {
			o.Addresses = []netip.Prefix{netip.MustParsePrefix("169.254.170.0/24")}
		}, "host prefix"},
		{"an address listed twice is refused", func(o *Options) { o.Addresses = []netip.Prefix{ECSAddr, ECSAddr} }, "twice"},
		{"IMDS on 169.254.169.254 itself is refused", func(o *Options) {
			o.IMDS.ListenAddr = netip.MustParseAddrPort("169.254.169.254:80")
		}, "real IMDS away from the node"},
		{"IMDS on loopback is refused", func(o *Options) {
			o.IMDS.ListenAddr = netip.MustParseAddrPort("127.0.0.1:8169")
		}, "loopback"},
		{"IMDS on IPv6 is refused", func(o *Options) {
			o.IMDS.ListenAddr = netip.MustParseAddrPort("[fd00:ec2::23]:8169")
		}, "must be IPv4"},
		{"IMDS without a port is refused", func(o *Options) {
			o.IMDS.ListenAddr = netip.AddrPortFrom(netip.MustParseAddr("169.254.170.23"), 0)
		}, "and a port"},
		{"IMDS without pod interfaces is refused", func(o *Options) { o.IMDS.PodInterfaces = nil }, "no pod interface patterns"},
		{"a bare wildcard is refused", func(o *Options) { o.IMDS.PodInterfaces = []string{"+"} }, "every interface"},
		{"a wildcard inside a pattern is refused", func(o *Options) { o.IMDS.PodInterfaces = []string{"ve+th+"} }, "may only end"},
		{"an overlong pattern is refused", func(o *Options) { o.IMDS.PodInterfaces = []string{"averyverylongname+"} }, "longer than 15"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good()
			tt.change(&o)
			err := o.validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("validate() = %v, want no error", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("validate() = %v, want an error containing %q", err, tt.wantErr)
			}
			if err == nil && o.Interface != DefaultInterface && o.Interface == "" {
				t.Fatalf("empty interface name was not defaulted")
			}
		})
	}
}

func TestEmptyInterfaceMeansTheDefault(t *testing.T) {
	o := Options{}
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	if o.Interface != DefaultInterface {
		t.Fatalf("Interface = %q, want %q", o.Interface, DefaultInterface)
	}
}

func TestDefaultAddressesFollowIPv6(t *testing.T) {
	got := DefaultAddresses()
	want := []netip.Prefix{ContainerAddr, ECSAddr}
	if IPv6Enabled() {
		want = append(want, ContainerAddrV6)
	}
	if len(got) != len(want) {
		t.Fatalf("DefaultAddresses() = %v, want %v (IPv6 on: %v)", got, want, IPv6Enabled())
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("DefaultAddresses() = %v, want %v", got, want)
		}
	}
}
