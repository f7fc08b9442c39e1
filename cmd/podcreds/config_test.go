package main

import (
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestMain lets a test run the real main() in a child process, to check exit
// codes and messages as a user sees them.
func TestMain(m *testing.M) {
	if os.Getenv("PODCREDS_TEST_RUN_MAIN") == "1" {
		os.Args = append([]string{"podcreds"}, strings.Fields(os.Getenv("PODCREDS_TEST_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestParseConfig(t *testing.T) {
	t.Run("production defaults need only the node name", func(t *testing.T) {
		c, err := parseConfig(nil, env(map[string]string{"NODE_NAME": "node-a"}))
		if err != nil {
			t.Fatal(err)
		}
		if c.NodeName != "node-a" || !reflect.DeepEqual(c.Listen, []string{"169.254.170.23:80", "[fd00:ec2::23]:80"}) ||
			!reflect.DeepEqual(c.ECSListen, []string{"169.254.170.2:80"}) || c.CredentialDuration != time.Hour ||
			c.Audience != "sts.amazonaws.com" || c.CredentialsPath != "/v1/credentials" || c.HealthListen != "127.0.0.1:8090" {
			t.Fatalf("defaults: %+v", c)
		}
	})
	t.Run("environment fills flags that were not given and flags win", func(t *testing.T) {
		c, err := parseConfig([]string{"--log-level=debug", "--listen=127.0.0.1:1"}, env(map[string]string{
			"NODE_NAME": "n", "PODCREDS_LISTEN": "127.0.0.1:9", "PODCREDS_ECS_LISTEN": "127.0.0.2:1, 127.0.0.3:1",
			"PODCREDS_LOG_LEVEL": "error", "AWS_REGION": "eu-west-1", "PODCREDS_CREDENTIAL_DURATION": "2h",
		}))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(c.Listen, []string{"127.0.0.1:1"}) || !reflect.DeepEqual(c.ECSListen, []string{"127.0.0.2:1", "127.0.0.3:1"}) ||
			c.LogLevel.String() != "debug" || c.STSRegion != "eu-west-1" || c.CredentialDuration != 2*time.Hour {
			t.Fatalf("%+v", c)
		}
	})
	t.Run("a repeated flag accumulates and replaces the default", func(t *testing.T) {
		c, err := parseConfig([]string{"--node-name=n", "--listen=127.0.0.1:1", "--listen=127.0.0.1:2", "--ecs-listen=none"}, env(nil))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(c.Listen, []string{"127.0.0.1:1", "127.0.0.1:2"}) || c.ECSListen != nil {
			t.Fatalf("%+v", c)
		}
	})
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"the node name is required", nil, "-node-name"},
		{"a listen address needs a port", []string{"--listen=169.254.170.23"}, "listen address"},
		{"credential duration below STS's minimum is refused", []string{"--credential-duration=5m"}, "-credential-duration"},
		{"credential duration above STS's maximum is refused", []string{"--credential-duration=13h"}, "-credential-duration"},
		{"token expiration below the TokenRequest minimum is refused", []string{"--token-expiration=5m"}, "-token-expiration"},
		{"a refresh fraction outside (0,1) is refused", []string{"--refresh-fraction=1"}, "-refresh-fraction"},
		{"an STS endpoint must be a URL", []string{"--sts-endpoint=sts.local"}, "-sts-endpoint"},
		{"an unknown log format is refused", []string{"--log-format=xml"}, "-log-format"},
		{"an unknown log level is refused", []string{"--log-level=loud"}, "-log-level"},
		{"the credentials path must be absolute", []string{"--credentials-path=v1"}, "-credentials-path"},
		{"positional arguments are refused", []string{"extra"}, "unexpected arguments"},
		{"link setup cannot redirect IMDS to an IPv6-only listener", []string{"--link-setup", "--imds-listen=[fd00:ec2::23]:8169"}, "-link-setup"},
		{"link setup refuses to redirect IMDS to itself", []string{"--link-setup", "--imds-listen=169.254.169.254:80"}, "-link-setup"},
		{"an account ID must have 12 digits", []string{"--allowed-accounts=1234"}, "-allowed-accounts"},
		{"an STS region must be a region name", []string{"--sts-region=mars"}, "-sts-region"},
		{"bad flag syntax is reported and parsing goes on past it", []string{"---x", "--log-format=xml"}, "-log-format"},
		{"an STS region must be spelled as AWS does", []string{"--sts-region=us-east1"}, "-sts-region"},
		{"two listeners on one address name both flags", []string{"--listen=127.0.0.1:8090"}, "-listen 127.0.0.1:8090 and -health-listen 127.0.0.1:8090"},
		{"one listener's address given twice is refused", []string{"--listen=127.0.0.1:1", "--listen=127.0.0.1:1"}, "-listen names 127.0.0.1:1 and 127.0.0.1:1"},
		{"a wildcard address overlaps every address on its port", []string{"--listen=0.0.0.0:80"}, "-ecs-listen 169.254.170.2:80"},
		{"an IPv6 wildcard overlaps IPv4 addresses on its port", []string{"--imds-listen=[::]:80"}, "-imds-listen [::]:80"},
		{"metrics and health on one address are refused", []string{"--metrics-listen=127.0.0.1:8090"}, "-metrics-listen 127.0.0.1:8090"},
		{"an explicit refresh-before of the whole lifetime names both flags and the fix", []string{"--credential-duration=20m", "--refresh-before=20m"}, "lower -refresh-before, or leave it unset"},
		{"a deprecated name and its replacement together are refused", []string{"--audience=a", "--sts-token-audience=b"}, "-audience and -sts-token-audience are the same setting"},
		{"a drain delay must be shorter than the shutdown timeout", []string{"--drain-delay=10s", "--shutdown-timeout=5s"}, "-drain-delay"},
		{"a negative drain delay is refused", []string{"--drain-delay=-1s"}, "-drain-delay"},
		{"the warm timeout must be positive", []string{"--warm-timeout=0"}, "-warm-timeout"},
		{"a startup taint must be a taint key", []string{"--startup-taint=not a key"}, "-startup-taint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.want != "-node-name" {
				args = append([]string{"--node-name=n"}, args...)
			}
			_, err := parseConfig(args, env(nil))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	t.Run("link setup with IMDS redirects pods to the IMDS listener", func(t *testing.T) {
		c, err := parseConfig([]string{"--node-name=n", "--link-setup", "--imds-listen=169.254.170.23:8169", "--link-pod-interfaces=veth+,cni0"}, env(nil))
		if err != nil {
			t.Fatal(err)
		}
		o, err := c.linkOptions()
		if err != nil || o.IMDS == nil || o.IMDS.ListenAddr.String() != "169.254.170.23:8169" ||
			!reflect.DeepEqual(o.IMDS.PodInterfaces, []string{"veth+", "cni0"}) || o.Interface != "podcreds0" {
			t.Fatalf("%+v %v", o, err)
		}
	})
	t.Run("link setup caps each source's connections in the kernel on every listener pods reach", func(t *testing.T) {
		c, err := parseConfig([]string{"--node-name=n", "--link-setup", "--imds-listen=169.254.170.23:8169", "--max-connections-per-address=7"}, env(nil))
		if err != nil {
			t.Fatal(err)
		}
		o, err := c.linkOptions()
		want := []netip.AddrPort{
			netip.MustParseAddrPort("169.254.170.23:80"), netip.MustParseAddrPort("[fd00:ec2::23]:80"),
			netip.MustParseAddrPort("169.254.170.2:80"), netip.MustParseAddrPort("169.254.170.23:8169"),
		}
		if err != nil || o.ConnCap == nil || o.ConnCap.Max != 7 || !slices.Equal(o.ConnCap.Listeners, want) {
			t.Fatalf("cap %+v (%v), want 7 per source on %v", o.ConnCap, err, want)
		}
		c, err = parseConfig([]string{"--node-name=n", "--link-setup", "--listen=localhost:8080", "--ecs-listen=none"}, env(nil))
		if err != nil {
			t.Fatal(err)
		}
		if o, err := c.linkOptions(); err != nil || o.ConnCap != nil {
			t.Fatalf("a host name's listener: cap %+v (%v), want none in the kernel", o.ConnCap, err)
		}
	})
	t.Run("listeners on port 0 never overlap", func(t *testing.T) {
		if _, err := parseConfig([]string{"--node-name=n", "--listen=127.0.0.1:0", "--ecs-listen=127.0.0.1:0", "--health-listen=127.0.0.1:0", "--metrics-listen=127.0.0.1:0"}, env(nil)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("--listen=none disables the container listener like --ecs-listen=none", func(t *testing.T) {
		c, err := parseConfig([]string{"--node-name=n", "--listen=none"}, env(nil))
		if err != nil || c.Listen != nil || len(c.ECSListen) != 1 {
			t.Fatalf("%+v %v", c, err)
		}
		if _, err := parseConfig([]string{"--node-name=n", "--listen=none", "--ecs-listen=none"}, env(nil)); err == nil || !strings.Contains(err.Error(), "at least one") {
			t.Fatalf("no listener at all: %v", err)
		}
	})
	t.Run("region names AWS uses are accepted", func(t *testing.T) {
		for _, r := range []string{"us-east-1", "eu-central-2", "ap-southeast-4", "us-gov-west-1", "cn-northwest-1", "us-isob-east-1", "il-central-1", "aws-global"} {
			if _, err := parseConfig([]string{"--node-name=n", "--sts-region=" + r}, env(nil)); err != nil {
				t.Errorf("%s: %v", r, err)
			}
		}
	})
	t.Run("refresh-before follows the credential duration unless given", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			env  map[string]string
			want time.Duration
		}{
			{nil, nil, 20 * time.Minute},
			{[]string{"--credential-duration=2h"}, nil, 20 * time.Minute},
			{[]string{"--credential-duration=20m"}, nil, 20 * time.Minute / 3},
			{[]string{"--credential-duration=15m"}, nil, 5 * time.Minute},
			{[]string{"--credential-duration=15m", "--refresh-before=3m"}, nil, 3 * time.Minute},
			{[]string{"--credential-duration=15m"}, map[string]string{"PODCREDS_REFRESH_BEFORE": "4m"}, 4 * time.Minute},
		} {
			c, err := parseConfig(append([]string{"--node-name=n"}, tc.args...), env(tc.env))
			if err != nil || c.RefreshBefore != tc.want {
				t.Errorf("%v %v: refresh-before %v (%v), want %v", tc.args, tc.env, c.RefreshBefore, err, tc.want)
			}
		}
	})
	t.Run("renamed flags keep their old names with a warning", func(t *testing.T) {
		c, err := parseConfig([]string{"--node-name=n", "--audience=a", "--token-expiration=30m", "--token-audience=p", "--token-issuer=https://issuer.example", "--token-verification=off"}, env(nil))
		if err != nil {
			t.Fatal(err)
		}
		if c.Audience != "a" || c.TokenExpiration != 30*time.Minute || c.TokenAudience != "p" || c.TokenIssuer != "https://issuer.example" || c.TokenVerification != "off" {
			t.Fatalf("old names did not set the settings: %+v", c)
		}
		want := []string{
			"-audience is deprecated; use -sts-token-audience", "-token-audience is deprecated; use -pod-token-audience",
			"-token-expiration is deprecated; use -sts-token-expiration", "-token-issuer is deprecated; use -pod-token-issuer",
			"-token-verification is deprecated; use -pod-token-verification",
		}
		if !reflect.DeepEqual(c.Warnings, want) {
			t.Fatalf("warnings %q, want %q", c.Warnings, want)
		}
		c, err = parseConfig([]string{"--node-name=n"}, env(map[string]string{"PODCREDS_TOKEN_AUDIENCE": "old", "PODCREDS_AUDIENCE": "x", "PODCREDS_STS_TOKEN_AUDIENCE": "new"}))
		if err != nil || c.TokenAudience != "old" || c.Audience != "new" ||
			!reflect.DeepEqual(c.Warnings, []string{"PODCREDS_TOKEN_AUDIENCE is deprecated; use PODCREDS_POD_TOKEN_AUDIENCE"}) {
			t.Fatalf("environment: %+v %v", c, err)
		}
		c, err = parseConfig([]string{"--node-name=n", "--pod-token-audience=new"}, env(nil))
		if err != nil || c.TokenAudience != "new" || len(c.Warnings) != 0 {
			t.Fatalf("new name: %+v %v", c, err)
		}
	})
	t.Run("the help's own examples are accepted", func(t *testing.T) {
		// --imds-listen's help names what the DaemonSet runs.
		m := regexp.MustCompile(`uses (\S+) with -link-setup`).FindStringSubmatch(agentUsage())
		if m == nil {
			t.Fatal("the -imds-listen help no longer names the DaemonSet's address")
		}
		if _, err := parseConfig([]string{"--node-name=n", "--link-setup", "--imds-listen=" + m[1]}, env(nil)); err != nil {
			t.Fatalf("the help's example is refused: %v", err)
		}
	})
	t.Run("the shipped DaemonSet's arguments are accepted", func(t *testing.T) {
		raw, err := os.ReadFile("../../deploy/daemonset.yaml")
		if err != nil {
			t.Fatal(err)
		}
		args := regexp.MustCompile(`(?m)^\s+- (--[a-z-]+(?:=\S+)?)$`).FindAllStringSubmatch(string(raw), -1)
		if len(args) < 3 {
			t.Fatalf("found %d flags in daemonset.yaml", len(args))
		}
		var flags []string
		for _, a := range args {
			flags = append(flags, a[1])
		}
		c, err := parseConfig(flags, env(map[string]string{"NODE_NAME": "n"}))
		if err != nil || len(c.Warnings) > 0 {
			t.Fatalf("%q: %v %q", flags, err, c.Warnings)
		}
	})
	t.Run("a parse error elsewhere keeps the values that parsed", func(t *testing.T) {
		c, err := parseConfig([]string{"--node-name=n", "--pod-token-audience=mine", "--token-expiration=30m", "--no-such-flag", "--credential-duration=2h"}, env(nil))
		if err == nil || c.TokenAudience != "mine" || c.TokenExpiration != 30*time.Minute || c.CredentialDuration != 2*time.Hour {
			t.Fatalf("%+v %v", c, err)
		}
	})
	t.Run("required token verification is allowed with IMDS, which stays identified by address", func(t *testing.T) {
		c, err := parseConfig([]string{"--node-name=n", "--pod-token-verification=required", "--imds-listen=169.254.170.23:8169"}, env(nil))
		if err != nil || c.TokenVerification != "required" || len(c.IMDSListen) != 1 {
			t.Fatalf("%+v %v", c, err)
		}
	})
	t.Run("every problem is reported at once", func(t *testing.T) {
		_, err := parseConfig([]string{"--credential-duration=1m", "--no-such-flag", "--rate-limit=fast", "--log-format=xml", "--sts-region=mars"}, env(nil))
		for _, want := range []string{"-node-name", "-credential-duration", "-log-format", "no-such-flag", "-rate-limit", "-sts-region"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("error %v does not mention %s", err, want)
			}
		}
	})
	t.Run("a bad value in the environment names the variable", func(t *testing.T) {
		_, err := parseConfig([]string{"--node-name=n"}, env(map[string]string{"PODCREDS_CREDENTIAL_DURATION": "soon"}))
		if err == nil || !strings.Contains(err.Error(), "PODCREDS_CREDENTIAL_DURATION") {
			t.Fatalf("error %v", err)
		}
	})
}

func TestBadFlagsExitTwoWithAMessage(t *testing.T) {
	for _, tc := range []struct {
		name, args, want string
	}{
		{"an invalid value", "agent --node-name=n --credential-duration=1m", "-credential-duration"},
		{"an unknown flag", "agent --no-such-flag", "no-such-flag"},
		{"no subcommand", "", "usage: podcreds <command>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := runMain(t, tc.args, "", 2)
			if !strings.Contains(out, tc.want) {
				t.Fatalf("output does not mention %q:\n%s", tc.want, out)
			}
		})
	}
	t.Run("several bad flags are all listed, without the flag list", func(t *testing.T) {
		out := runMain(t, "agent --no-such-flag --credential-duration=soon --log-format=xml --sts-region=mars", "", 2)
		for _, want := range []string{"no-such-flag", "-credential-duration", "-log-format", "-sts-region", "-node-name", "5 problems with the configuration", `"podcreds agent -h"`} {
			if !strings.Contains(out, want) {
				t.Errorf("output does not mention %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "-kube-api-qps") {
			t.Errorf("the output lists the flags:\n%s", out)
		}
	})
	for _, args := range []string{"agent --no-such-flag", "agent --credential-duration=soon", "agent --rate-limit"} {
		t.Run("a parse error prints at most three lines: "+args, func(t *testing.T) {
			out := runMain(t, args, "node-a", 2)
			if n := strings.Count(strings.TrimRight(out, "\n"), "\n") + 1; n > 3 {
				t.Fatalf("%d lines:\n%s", n, out)
			}
		})
	}
	t.Run("-h lists the current flags only and exits 0", func(t *testing.T) {
		out := runMain(t, "agent -h", "", 0)
		if !strings.Contains(out, "-pod-token-audience") || !strings.Contains(out, "-sts-token-audience") || strings.Contains(out, "\n  -token-audience ") {
			t.Fatalf("help:\n%s", out)
		}
	})
	t.Run("a deprecated name warns", func(t *testing.T) {
		out := runMain(t, "agent --token-audience=x --credential-duration=1m", "node-a", 2)
		_ = out // invalid, so nothing starts; the warning needs a valid configuration:
		out = runMain(t, "agent --audience=x --kubeconfig=/nonexistent/kubeconfig", "node-a", 1)
		if !strings.Contains(out, "warning: -audience is deprecated; use -sts-token-audience") {
			t.Fatalf("output:\n%s", out)
		}
	})
}

// runMain runs main() with args in a child process, with NODE_NAME set to
// node, and returns its output, failing unless it exits with status want.
func runMain(t *testing.T, args, node string, want int) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PODCREDS_TEST_RUN_MAIN=1", "PODCREDS_TEST_ARGS="+args, "NODE_NAME="+node)
	out, err := cmd.CombinedOutput()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if code != want {
		t.Fatalf("%q exited %d, want %d; output:\n%s", args, code, want, out)
	}
	return string(out)
}

// FuzzParseConfig: whatever a user types, parseConfig answers with a
// configuration or an error listing problems, never a panic, and a
// configuration it accepts passes its own checks.
func FuzzParseConfig(f *testing.F) {
	for _, seed := range []string{
		"--node-name=n",
		"--node-name=n --listen=none --ecs-listen=127.0.0.1:0",
		"--credential-duration=20m --refresh-before=1h --sts-region=mars",
		"--no-such-flag --rate-limit fast extra",
		"--audience=a --sts-token-audience=b --token-verification=required --imds-listen=[::]:80",
		"-h",
	} {
		f.Add(seed, "NODE_NAME=x PODCREDS_TOKEN_AUDIENCE=y")
	}
	f.Fuzz(func(t *testing.T, args, environment string) {
		vars := map[string]string{}
		for _, kv := range strings.Fields(environment) {
			if k, v, ok := strings.Cut(kv, "="); ok {
				vars[k] = v
			}
		}
		c, err := parseConfig(strings.Fields(args), env(vars))
		if err != nil {
			for _, p := range problems(err) {
				if p == "" {
					t.Fatalf("an empty problem in %q", err)
				}
			}
			return
		}
		if err := c.validate(); err != nil {
			t.Fatalf("accepted a configuration its checks refuse: %v", err)
		}
	})
}
