package tokenreq

import (
	"strings"
	"testing"
)

func TestSessionName(t *testing.T) {
	long := strings.Repeat("a", 63)
	tests := []struct {
		name      string
		ns, sa    string
		want      string // exact result, when given
		wantStart string // prefix, when the result carries a hash
	}{
		{"valid Kubernetes names are kept as they are", "shop", "checkout", "podcreds@shop.checkout", ""},
		{"dots in the ServiceAccount name are kept", "shop", "checkout.v2", "podcreds@shop.checkout.v2", ""},
		{"a name of exactly 64 characters is kept", "ns", strings.Repeat("s", 64-len("podcreds@ns.")), "podcreds@ns." + strings.Repeat("s", 52), ""},
		{"a long name is cut and given a hash", long, long, "", "podcreds@" + long[:46] + "-"},
		{"disallowed characters become dashes and add a hash", "shop", "check out/é", "", "podcreds@shop.check-out---"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SessionName(tt.ns, tt.sa)
			checkSessionName(t, got)
			if tt.want != "" && got != tt.want {
				t.Errorf("SessionName(%q, %q) = %q, want %q", tt.ns, tt.sa, got, tt.want)
			}
			if tt.wantStart != "" && (!strings.HasPrefix(got, tt.wantStart) || len(got) != len(tt.wantStart)+sessionHashLen) {
				t.Errorf("SessionName(%q, %q) = %q, want %q followed by %d hash digits", tt.ns, tt.sa, got, tt.wantStart, sessionHashLen)
			}
		})
	}

	t.Run("names that only differ past the cut stay apart", func(t *testing.T) {
		if a, b := SessionName(long, long+"x"), SessionName(long, long+"y"); a == b {
			t.Errorf("both got %q", a)
		}
	})
	t.Run("names that sanitise alike stay apart", func(t *testing.T) {
		if a, b := SessionName("shop", "a/b"), SessionName("shop", "a b"); a == b {
			t.Errorf("both got %q", a)
		}
	})
	t.Run("moving a dot between the names changes the result", func(t *testing.T) {
		// Not valid Kubernetes namespaces, but must still not collide.
		if a, b := SessionName("a.b", "c"), SessionName("a", "b.c"); a == b {
			t.Errorf("both got %q", a)
		}
	})
}

func checkSessionName(t *testing.T, name string) {
	t.Helper()
	if !validSessionName.MatchString(name) {
		t.Errorf("session name %q is not 2–64 characters of [\\w+=,.@-]", name)
	}
}

func FuzzSessionName(f *testing.F) {
	seeds := [][2]string{
		{"shop", "checkout"},
		{"", ""},
		{"kube-system", "aws-load-balancer-controller"},
		{strings.Repeat("n", 63), strings.Repeat("s", 253)},
		{"a.b", "c"},
		{"ns", "name with spaces/and:colons"},
		{"ünïcødé", "日本語"},
		{"\xff\xfe", "\x00"},
		{"+=,.@-_", "+=,.@-_"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, ns, sa string) {
		name := SessionName(ns, sa)
		checkSessionName(t, name)
		if again := SessionName(ns, sa); again != name {
			t.Errorf("SessionName(%q, %q) is not deterministic: %q then %q", ns, sa, name, again)
		}
		if !strings.HasPrefix(name, "podcreds@") {
			t.Errorf("session name %q lacks the podcreds@ prefix", name)
		}
	})
}

func TestCheckSessionName(t *testing.T) {
	for _, ok := range []string{"kafka-client", "ab", "a_b+c=d,e.f@g-h", strings.Repeat("x", 64)} {
		if err := CheckSessionName(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a", strings.Repeat("x", 65), "has space", "slash/no", "ünï", "colon:no", "new\nline"} {
		if err := CheckSessionName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzCheckSessionName(f *testing.F) {
	f.Add("kafka-client")
	f.Add("a b")
	f.Fuzz(func(t *testing.T, name string) {
		if CheckSessionName(name) == nil && !validSessionName.MatchString(name) {
			t.Fatalf("%q accepted but STS would refuse it", name)
		}
		if CheckSessionName(name) != nil && validSessionName.MatchString(name) {
			t.Fatalf("%q refused but STS would accept it", name)
		}
	})
}
