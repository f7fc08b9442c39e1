package main

import (
	"errors"
	"os"
	"os/exec"
	"reflect"
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
	t.Run("required token verification is allowed with IMDS, which stays identified by address", func(t *testing.T) {
		c, err := parseConfig([]string{"--node-name=n", "--token-verification=required", "--imds-listen=169.254.170.23:8169"}, env(nil))
		if err != nil || c.TokenVerification != "required" || len(c.IMDSListen) != 1 {
			t.Fatalf("%+v %v", c, err)
		}
	})
	t.Run("every problem is reported at once", func(t *testing.T) {
		_, err := parseConfig([]string{"--credential-duration=1m", "--log-format=xml"}, env(nil))
		for _, want := range []string{"-node-name", "-credential-duration", "-log-format"} {
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
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "PODCREDS_TEST_RUN_MAIN=1", "PODCREDS_TEST_ARGS="+tc.args, "NODE_NAME=")
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 {
				t.Fatalf("exit %v, want status 2; output:\n%s", err, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Fatalf("output does not mention %q:\n%s", tc.want, out)
			}
		})
	}
}
