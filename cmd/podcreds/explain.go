package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/podcreds/podcreds/explain"
	"github.com/podcreds/podcreds/kube"
	"github.com/podcreds/podcreds/roles"
	"github.com/podcreds/podcreds/tokenreq"
	"github.com/podcreds/podcreds/webhook"
)

// ExplainConfig is everything `podcreds explain` is told: which pod, and
// the settings the agent and the webhook run with, so that it decides as
// they do.
type ExplainConfig struct {
	Kubeconfig string
	Namespace  string
	Pod        string
	Output     string // text or json
	Agent      string // the node agent's health address, optional
	Timeout    time.Duration

	AllowedAccounts []string
	Audience        string
	TokenExpiration time.Duration
	Webhook         webhook.Settings
}

func parseExplainConfig(args []string, stderr io.Writer) (*ExplainConfig, error) {
	c := &ExplainConfig{}
	fs := flag.NewFlagSet("podcreds explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: podcreds explain [flags] NAMESPACE/POD\n\n"+
			"What podcreds makes of a pod: its node and addresses, ServiceAccount, the role and where it\n"+
			"came from (or why it is refused), the target role, session name and external id, the account\n"+
			"allow-list, token audience and lifetime, and what the admission webhook would inject; with\n"+
			"-agent also what that node's agent holds for it now. Pass the flags the agent and the webhook\n"+
			"run with where they differ from the defaults.\n\nflags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.Kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file (env KUBECONFIG); empty: in-cluster")
	fs.StringVar(&c.Output, "output", "text", "text or json")
	fs.StringVar(&c.Agent, "agent", "", "the pod's node agent's health address (its --health-listen, e.g. 127.0.0.1:8090 through kubectl port-forward, or on the node): adds the live cache state")
	fs.DurationVar(&c.Timeout, "timeout", 30*time.Second, "give up after this long")
	fs.Var(&listFlag{values: &c.AllowedAccounts}, "allowed-accounts", "the agent's --allowed-accounts")
	fs.StringVar(&c.Audience, "audience", tokenreq.DefaultAudience, "the agent's --audience")
	fs.DurationVar(&c.TokenExpiration, "token-expiration", tokenreq.DefaultTokenExpiration, "the agent's --token-expiration")
	fs.StringVar(&c.Webhook.Endpoint, "webhook-endpoint", "/v1/credentials", "the webhook's --endpoint")
	fs.StringVar(&c.Webhook.TokenAudience, "webhook-token-audience", "podcreds", "the webhook's --token-audience")
	fs.DurationVar(&c.Webhook.TokenExpiration, "webhook-token-expiration", time.Hour, "the webhook's --token-expiration")
	fs.StringVar(&c.Webhook.Region, "webhook-region", "", "the webhook's --region")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var problems []string
	if fs.NArg() != 1 {
		problems = append(problems, "name exactly one pod as NAMESPACE/POD")
	} else if ns, name, ok := strings.Cut(fs.Arg(0), "/"); !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		problems = append(problems, fmt.Sprintf("%q is not NAMESPACE/POD", fs.Arg(0)))
	} else if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		problems = append(problems, fmt.Sprintf("namespace %q: %s", ns, strings.Join(errs, "; ")))
	} else if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		problems = append(problems, fmt.Sprintf("pod name %q: %s", name, strings.Join(errs, "; ")))
	} else {
		c.Namespace, c.Pod = ns, name
	}
	if c.Output != "text" && c.Output != "json" {
		problems = append(problems, fmt.Sprintf("-output %q is neither text nor json", c.Output))
	}
	if c.TokenExpiration < roles.MinTokenExpiration {
		problems = append(problems, fmt.Sprintf("-token-expiration %s is below %s", c.TokenExpiration, roles.MinTokenExpiration))
	}
	if _, err := webhook.ParseEndpoint(c.Webhook.Endpoint); err != nil {
		problems = append(problems, "-webhook-endpoint: "+err.Error())
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "\n"))
	}
	return c, nil
}

func explainMain(args []string) int {
	cfg, err := parseExplainConfig(args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "podcreds explain: %v\n(podcreds explain -h for usage)\n", err)
		return 2
	}
	if err := runExplain(context.Background(), cfg, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "podcreds explain: %v\n", err)
		return 1
	}
	return 0
}

func runExplain(ctx context.Context, cfg *ExplainConfig, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	restCfg, err := kubeConfig(cfg.Kubeconfig, 20, 40)
	if err != nil {
		return fmt.Errorf("%w; pass -kubeconfig (or set KUBECONFIG) outside the cluster", err)
	}
	restCfg.UserAgent = "podcreds-explain"
	client, err := kube.New(restCfg)
	if err != nil {
		return err
	}
	r, err := explain.Explain(ctx, explain.Options{
		Client: client, AllowedAccounts: cfg.AllowedAccounts, Audience: cfg.Audience, TokenExpiration: cfg.TokenExpiration,
		Webhook: cfg.Webhook, Agent: cfg.Agent,
	}, cfg.Namespace, cfg.Pod)
	if err != nil {
		return err
	}
	if cfg.Output == "json" {
		b, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return err
		}
		_, err = out.Write(append(b, '\n'))
		return err
	}
	return r.WriteText(out)
}
