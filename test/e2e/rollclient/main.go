// Command rollclient makes steady credential requests from inside a pod's
// network namespace while the e2e suite rolls the agent, and reports every
// request it made. Four loops run side by side, each a request every
// -interval: the container endpoint over one kept-alive connection and over
// a new connection per request, and IMDSv2 the same two ways (the kept-alive
// loop holds one session token for the whole run, as SDKs do; the other asks
// for a token per request). It stops on SIGTERM and prints one JSON object:
// every request's start (ms since the client started), latency and error.
//
// It adds no retries of its own (SDKs would retry; this client must not hide
// a dropped request): only Go's transport resends a GET whose kept-alive
// connection the server had closed before the request reached it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"flag"
)

// Request is one request's record.
type Request struct {
	Loop    string  `json:"loop"`
	StartMS float64 `json:"startMs"`
	Millis  float64 `json:"ms"`
	Error   string  `json:"error,omitempty"`
}

func main() {
	container := flag.String("container", "http://169.254.170.23/v1/credentials", "container endpoint URL")
	imds := flag.String("imds", "http://169.254.169.254", "IMDS base URL; empty: no IMDS loops (IMDS is IPv4 only)")
	tokenFile := flag.String("token-file", "", "projected ServiceAccount token sent in Authorization")
	interval := flag.Duration("interval", 200*time.Millisecond, "time between requests of one loop")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	start := time.Now()
	var mu sync.Mutex
	var out []Request
	record := func(loop string, began time.Time, err error) {
		r := Request{Loop: loop, StartMS: ms(began.Sub(start)), Millis: ms(time.Since(began))}
		if err != nil {
			r.Error = err.Error()
		}
		mu.Lock()
		out = append(out, r)
		mu.Unlock()
	}
	kept := func() *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext, MaxIdleConnsPerHost: 1, IdleConnTimeout: time.Minute,
		}}
	}
	fresh := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

	loops := map[string]func(c *http.Client, token *string) error{
		"container kept-alive": func(c *http.Client, _ *string) error { return containerGet(c, *container, *tokenFile) },
		"container new-conn":   func(_ *http.Client, _ *string) error { return containerGet(fresh, *container, *tokenFile) },
		"imds kept-alive": func(c *http.Client, token *string) error {
			if *token == "" {
				t, err := imdsToken(c, *imds)
				if err != nil {
					return err
				}
				*token = t
			}
			return imdsCredentials(c, *imds, *token)
		},
		"imds new-conn": func(_ *http.Client, _ *string) error {
			t, err := imdsToken(fresh, *imds)
			if err != nil {
				return err
			}
			return imdsCredentials(fresh, *imds, t)
		},
	}
	if *imds == "" {
		delete(loops, "imds kept-alive")
		delete(loops, "imds new-conn")
	}
	var wg sync.WaitGroup
	for name, do := range loops {
		wg.Go(func() {
			c, token := kept(), ""
			tick := time.NewTicker(*interval)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				began := time.Now()
				record(name, began, do(c, &token))
			}
		})
	}
	wg.Wait()
	_ = json.NewEncoder(os.Stdout).Encode(out)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func containerGet(c *http.Client, url, tokenFile string) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if tokenFile != "" {
		tok, err := os.ReadFile(tokenFile)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", strings.TrimSpace(string(tok)))
	}
	body, err := do(c, req)
	if err != nil {
		return err
	}
	var creds struct{ AccessKeyId, Token, Expiration string }
	if err := json.Unmarshal(body, &creds); err != nil || creds.AccessKeyId == "" || creds.Expiration == "" {
		return fmt.Errorf("not credentials: %.100q", body)
	}
	return nil
}

func imdsToken(c *http.Client, base string) (string, error) {
	req, err := http.NewRequest(http.MethodPut, base+"/latest/api/token", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "21600")
	body, err := do(c, req)
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	return string(body), nil
}

func imdsCredentials(c *http.Client, base, token string) error {
	get := func(path string) ([]byte, error) {
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("X-aws-ec2-metadata-token", token)
		return do(c, req)
	}
	list, err := get("/latest/meta-data/iam/security-credentials/")
	if err != nil {
		return fmt.Errorf("role list: %w", err)
	}
	role := strings.SplitN(strings.TrimSpace(string(list)), "\n", 2)[0]
	body, err := get("/latest/meta-data/iam/security-credentials/" + role)
	if err != nil {
		return fmt.Errorf("role credentials: %w", err)
	}
	var creds struct{ Code, AccessKeyId string }
	if err := json.Unmarshal(body, &creds); err != nil || creds.Code != "Success" || creds.AccessKeyId == "" {
		return fmt.Errorf("not credentials: %.100q", body)
	}
	return nil
}

func do(c *http.Client, req *http.Request) ([]byte, error) {
	res, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<16))
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, errors.New(res.Status + ": " + strings.TrimSpace(string(body)))
	}
	return body, nil
}
