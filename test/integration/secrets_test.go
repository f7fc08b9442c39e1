package integration

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/podcreds/podcreds/kube"
)

// secretLog collects every agent's debug log and every secret handed out
// during the run: the credentials clients received and the ServiceAccount
// tokens the API server minted for the agents.
type secretLog struct {
	mu      sync.Mutex
	logs    bytes.Buffer
	secrets map[string]string // secret -> what it is
	agents  int               // agents started
	broken  []string          // TokenRequest answers the recorder could not read
}

var secrets = &secretLog{secrets: map[string]string{}}

func (s *secretLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.Write(p)
}

func (s *secretLog) Sync() error { return nil }

func (s *secretLog) add(secret, what string) {
	if len(secret) < 8 { // too short to be a credential; would match by chance
		return
	}
	s.mu.Lock()
	s.secrets[secret] = what
	s.mu.Unlock()
}

// recordServed notes the secret parts of a credentials response.
func (s *secretLog) recordServed(body map[string]string) {
	s.add(body["SecretAccessKey"], "a secret access key served")
	s.add(body["Token"], "a session token served")
}

// recordPresented notes a ServiceAccount token a test pod presented to an
// agent in Authorization: the agent must not log what it is shown either.
func (s *secretLog) recordPresented(token string) {
	s.add(token, "a ServiceAccount token presented to the agent")
}

// recordIMDSToken notes an IMDS session token an agent minted.
func (s *secretLog) recordIMDSToken(token string) {
	s.add(token, "an IMDS session token")
}

// imdsRecorder wraps a pod's HTTP client for IMDS: every session token the
// agent mints (the body of PUT /latest/api/token) is recorded.
type imdsRecorder struct {
	next interface {
		Do(*http.Request) (*http.Response, error)
	}
}

func (c imdsRecorder) Do(req *http.Request) (*http.Response, error) {
	res, err := c.next.Do(req)
	if err != nil || req.Method != http.MethodPut || req.URL.Path != "/latest/api/token" || res.StatusCode != http.StatusOK {
		return res, err
	}
	b, rerr := io.ReadAll(res.Body)
	res.Body.Close()
	res.Body = io.NopCloser(bytes.NewReader(b))
	if rerr == nil {
		secrets.recordIMDSToken(string(b))
	}
	return res, err
}

// core returns a zap core writing JSON at debug level into the sink.
func (s *secretLog) core() zapcore.Core {
	return zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewDevelopmentEncoderConfig()), zapcore.AddSync(s), zapcore.DebugLevel)
}

// agentClient is env's admin client with a transport that records every
// ServiceAccount token the API server returns.
func (s *secretLog) agentClient() kube.Client { return s.clientFor(env.Config) }

// clientFor is a client with base's identity that records every
// ServiceAccount token the API server returns, for the scan.
func (s *secretLog) clientFor(base *rest.Config) kube.Client {
	s.mu.Lock()
	s.agents++
	s.mu.Unlock()
	cfg := rest.CopyConfig(base)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
			res, err := rt.RoundTrip(req)
			if err != nil || req.Method != http.MethodPost || !strings.HasSuffix(req.URL.Path, "/token") {
				return res, err
			}
			b, rerr := io.ReadAll(res.Body)
			res.Body.Close()
			res.Body = io.NopCloser(bytes.NewReader(b))
			if rerr != nil {
				return res, err
			}
			// Protobuf, as the agent asks for; the deserializer reads either.
			obj, _, derr := clientscheme.Codecs.UniversalDeserializer().Decode(b, nil, nil)
			switch o := obj.(type) {
			case *authnv1.TokenRequest:
				s.add(o.Status.Token, "a ServiceAccount token minted for the agent")
			case *metav1.Status: // a refusal: no token in it
			default:
				s.mu.Lock()
				s.broken = append(s.broken, fmt.Sprintf("%s (%s): %v", req.URL.Path, res.Header.Get("Content-Type"), derr))
				s.mu.Unlock()
			}
			return res, err
		})
	}
	c, err := kube.New(cfg)
	if err != nil {
		panic(err)
	}
	return c
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// scanLogs fails if any recorded secret appears in any agent's log.
func (s *secretLog) scanLogs() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	logs := s.logs.String()
	kinds := map[string]int{}
	for _, what := range s.secrets {
		kinds[what]++
	}
	if len(s.broken) > 0 {
		return fmt.Errorf("secret scan: the recorder could not read %d TokenRequest answers, so their tokens went unchecked: %v", len(s.broken), s.broken)
	}
	if s.agents > 0 && (len(logs) == 0 || kinds["a ServiceAccount token minted for the agent"] == 0) {
		return fmt.Errorf("secret scan: %d agents ran but %d bytes of logs and %d ServiceAccount tokens were recorded: the recorder is broken",
			s.agents, len(logs), kinds["a ServiceAccount token minted for the agent"])
	}
	// Every word of the logs, split where no secret has a character (JSON
	// quoting, spaces, separators), so each secret is one set lookup; plus a
	// full substring search for a sample, in case a secret was glued to other
	// text. (Searching tens of megabytes once per secret takes minutes.)
	words := map[string]struct{}{}
	for _, w := range strings.FieldsFunc(logs, func(r rune) bool {
		return r == '"' || r == '\\' || r == ' ' || r == '\n' || r == '\t' || r == ',' || r == '{' || r == '}' || r == '[' || r == ']' || r == '='
	}) {
		words[w] = struct{}{}
	}
	var leaks []string
	sampled := 0
	for secret, what := range s.secrets {
		_, leaked := words[secret]
		if !leaked && sampled < 20 {
			sampled++
			leaked = strings.Contains(logs, secret)
		}
		if leaked {
			leaks = append(leaks, what)
		}
	}
	if len(leaks) > 0 {
		return fmt.Errorf("%d secrets found in agent logs: %v", len(leaks), leaks)
	}
	fmt.Printf("secret scan: %d secrets handed out (%v), none in %d bytes of debug logs\n", len(s.secrets), kinds, len(logs))
	return nil
}
