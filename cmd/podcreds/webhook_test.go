package main

import (
	"strings"
	"testing"
	"time"
)

func TestWebhookConfig(t *testing.T) {
	noEnv := func(string) string { return "" }
	c, err := parseWebhookConfig(nil, noEnv)
	if err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if c.Endpoint != "/v1/credentials" || c.TokenAudience != "podcreds" || c.TokenExpiration != time.Hour || c.Listen != ":8443" {
		t.Errorf("defaults: %+v", c)
	}
	env := map[string]string{"PODCREDS_REGION": "eu-west-1", "KUBECONFIG": "/k"}
	c, err = parseWebhookConfig([]string{"--endpoint=http://169.254.170.23/v1/credentials"}, func(k string) string { return env[k] })
	if err != nil || c.Region != "eu-west-1" || c.Kubeconfig != "/k" || c.Endpoint != "http://169.254.170.23/v1/credentials" {
		t.Errorf("flags and environment: %+v, %v", c, err)
	}
	_, err = parseWebhookConfig([]string{"--endpoint=http://example.com/", "--token-expiration=5m", "--tls-cert-file=", "--listen=nope"}, noEnv)
	for _, want := range []string{"-endpoint", "-token-expiration", "-tls-cert-file", "-listen"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want every problem listed, %q among them; got %v", want, err)
		}
	}
}
