package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"k8s.io/client-go/rest"

	"github.com/podcreds/podcreds/doctor"
	"github.com/podcreds/podcreds/issuer"
	"github.com/podcreds/podcreds/kube"
	"github.com/podcreds/podcreds/tokenreq"
)

// doctorMain runs `podcreds doctor`: every check, one line each; exit 1 on
// any ✗, 2 on bad flags.
func doctorMain(args []string) int {
	fs := flag.NewFlagSet("podcreds doctor", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: podcreds doctor --public-url=<issuer> [--role-arn=<arn>] [--iam] [flags]\n\n"+
			"Checks that AWS can trust this cluster's ServiceAccount tokens: the API server's issuer, the\n"+
			"public discovery document and keys, a fresh token against them, and with --role-arn STS, with\n"+
			"--iam the IAM OIDC provider. Prints a fix for every failed check; exits 1 if any failed.\n\n")
		fs.PrintDefaults()
	}
	publicURL := fs.String("public-url", "", "the issuer's public https URL (required)")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file; empty means in-cluster (env KUBECONFIG)")
	audience := fs.String("audience", "sts.amazonaws.com", "token audience: the IAM OIDC provider's client id")
	sa := fs.String("service-account", "default/default", "<namespace>/<name> whose token is minted and, with --role-arn, exchanged")
	roleARN := fs.String("role-arn", "", "also check that STS exchanges the token for this role")
	stsRegion := fs.String("sts-region", "us-east-1", "STS region (env AWS_REGION)")
	stsEndpoint := fs.String("sts-endpoint", "", "STS endpoint URL override; empty: the region's default")
	useIAM := fs.Bool("iam", false, "also check the IAM OIDC provider (iam:GetOpenIDConnectProvider, credentials from the default chain)")
	iamEndpoint := fs.String("iam-endpoint", "", "IAM endpoint URL override")
	account := fs.String("account-id", "", "AWS account of the IAM OIDC provider; default: the --role-arn's")
	caFile := fs.String("ca-file", "", "also trust this CA for the public URL (AWS trusts only public CAs: use for private set-ups only)")
	output := fs.String("output", "text", "text or json")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := flagsFromEnv(fs, os.Getenv, map[string]string{"kubeconfig": "KUBECONFIG", "sts-region": "AWS_REGION"}); err != nil {
		fmt.Fprintf(os.Stderr, "podcreds doctor: %v\n", err)
		return 2
	}
	var errs []error
	if *publicURL == "" {
		errs = append(errs, errors.New("-public-url is required"))
	}
	ns, name, ok := strings.Cut(*sa, "/")
	if !ok || ns == "" || name == "" {
		errs = append(errs, fmt.Errorf("-service-account %q must be <namespace>/<name>", *sa))
	}
	if *output != "text" && *output != "json" {
		errs = append(errs, fmt.Errorf("-output %q must be text or json", *output))
	}
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments: %q", fs.Args()))
	}
	if len(errs) > 0 {
		fmt.Fprintf(os.Stderr, "podcreds doctor: invalid configuration:\n%v\n", errors.Join(errs...))
		return 2
	}

	ctx, cancel := context.WithTimeout(signalContext(), *timeout)
	defer cancel()
	o, err := doctorOptions(ctx, *kubeconfig, *caFile, *useIAM, *iamEndpoint, *stsRegion)
	if err != nil {
		fmt.Fprintf(os.Stderr, "podcreds doctor: %v\n", err)
		return 2
	}
	o.PublicURL, o.Audience, o.Namespace, o.ServiceAccount = *publicURL, *audience, ns, name
	o.RoleARN, o.AccountID = *roleARN, *account
	if *roleARN != "" {
		o.STS = tokenreq.NewSTSClient(*stsRegion, *stsEndpoint, nil)
	}
	checks := doctor.Run(ctx, o)
	if *output == "json" {
		if err := doctor.PrintJSON(os.Stdout, checks); err != nil {
			return 1
		}
	} else {
		doctor.PrintText(os.Stdout, checks)
	}
	if !doctor.OK(checks) {
		return 1
	}
	return 0
}

// doctorKube reads the discovery endpoints as the publisher does and mints
// tokens through package kube.
type doctorKube struct {
	kube.Client
	raw *issuer.APIServerSource
}

func (d doctorKube) GetRaw(ctx context.Context, path string) ([]byte, error) {
	return d.raw.GetRaw(ctx, path)
}

func doctorOptions(ctx context.Context, kubeconfig, caFile string, useIAM bool, iamEndpoint, region string) (doctor.Options, error) {
	var o doctor.Options
	restCfg, err := kubeConfig(kubeconfig, 5, 10)
	if err != nil {
		return o, err
	}
	restCfg.UserAgent = "podcreds-doctor"
	kc, err := kube.New(restCfg)
	if err != nil {
		return o, err
	}
	hc, err := rest.HTTPClientFor(restCfg)
	if err != nil {
		return o, err
	}
	o.Kube = doctorKube{kc, &issuer.APIServerSource{Client: hc, Host: restCfg.Host}}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return o, fmt.Errorf("-ca-file: %w", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return o, fmt.Errorf("-ca-file %s holds no PEM certificate", caFile)
		}
	}
	o.HTTPClient = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		Proxy:           http.ProxyFromEnvironment,
	}}
	if useIAM {
		cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(region))
		if err != nil {
			return o, fmt.Errorf("AWS configuration for IAM: %w", err)
		}
		o.IAM = iam.NewFromConfig(cfg, func(io *iam.Options) {
			if iamEndpoint != "" {
				io.BaseEndpoint = aws.String(iamEndpoint)
			}
		})
	}
	return o, nil
}
