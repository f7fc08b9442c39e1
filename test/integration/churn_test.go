package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/podcreds/podcreds/agent"
	"github.com/podcreds/podcreds/internal/testkit/fakests"
	"github.com/podcreds/podcreds/internal/testkit/testenv"
)

// podRole is the role of churn pod i: every pod its own ServiceAccount and
// role, so credentials say exactly which pod they were for.
func podRole(i int) string { return fmt.Sprintf("arn:aws:iam::111111111111:role/pod-%d", i) }

var podRoleIndex = regexp.MustCompile(`role/pod-(\d+)$`)

// TestIPReuseNeverServesTheDeadPodsRole plays fast IP reuse: pod A (role A)
// is deleted and pod B (role B) immediately takes its address, cycle after
// cycle, while clients flood that address. A request sent after the agent
// has seen a pod's deletion must never get that pod's role. Deletions reach
// the agent in order on one watch, so once it has dropped pod k, every
// earlier pod is gone too: a response for any pod <= k is a violation.
// PODCREDS_CHURN_CYCLES overrides the 1000 cycles.
//
// With token verification required, each client also presents the token of
// the pod it is (the newest one): then no response may ever carry another
// pod's credentials than the token's, deleted or not.
func TestIPReuseNeverServesTheDeadPodsRole(t *testing.T) {
	cycles := 1000
	if v, err := strconv.Atoi(os.Getenv("PODCREDS_CHURN_CYCLES")); err == nil && v > 0 {
		cycles = v
	}
	t.Run("identified by address", func(t *testing.T) { churn(t, cycles, agent.TokenOff) })
	t.Run("with verification required", func(t *testing.T) { churn(t, cycles, agent.TokenRequired) })
}

// presented is the token a churn client sends, and whose pod it names.
type presented struct {
	pod   int64
	token string
}

func churn(t *testing.T, cycles int, mode agent.TokenMode) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	ns := uniqueName(t)
	h := startAgent(t, harnessOptions{node: "node-" + ns, sts: fakests.New(time.Hour), rateLimit: -1, wait: 50 * time.Millisecond, tokenMode: mode})
	var current atomic.Pointer[presented]
	var crossPod atomic.Int64
	ip := addr(31, 0, 1)

	var mu sync.Mutex
	var uids []types.UID     // pod i's UID
	lastDeleted := int64(-1) // highest pod index whose deletion was issued; guarded by mu
	// observedDeleted returns the highest pod index the agent has seen deleted.
	observedDeleted := func() int64 {
		mu.Lock()
		k := lastDeleted
		var uid types.UID
		if k >= 0 {
			uid = uids[k]
		}
		mu.Unlock()
		if k >= 0 && h.agent.Pod(uid) != nil {
			k-- // not yet; the one before it was (its successor is indexed)
		}
		return k
	}

	var served, refused, checked, violations atomic.Int64
	var firstViolation atomic.Pointer[string]
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := podClient(ip)
	client.Transport.(*http.Transport).DisableKeepAlives = false
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				dead := observedDeleted() // read before sending
				req, _ := http.NewRequest(http.MethodGet, h.url, nil)
				tok := current.Load()
				if mode == agent.TokenRequired && tok != nil {
					req.Header.Set("Authorization", tok.token)
				}
				res, err := client.Do(req)
				if err != nil {
					continue
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					refused.Add(1)
					continue
				}
				served.Add(1)
				var body map[string]string
				_ = json.Unmarshal(b, &body)
				secrets.recordServed(body)
				m := podRoleIndex.FindStringSubmatch(body["Token"])
				if m == nil {
					continue
				}
				checked.Add(1)
				i, _ := strconv.ParseInt(m[1], 10, 64)
				if mode == agent.TokenRequired && (tok == nil || i != tok.pod) {
					crossPod.Add(1)
					msg := fmt.Sprintf("served pod %d's credentials to a request with pod %v's token", i, tok)
					firstViolation.CompareAndSwap(nil, &msg)
				}
				if i <= dead {
					violations.Add(1)
					msg := fmt.Sprintf("served pod %d's role after the agent had seen pod %d deleted", i, dead)
					firstViolation.CompareAndSwap(nil, &msg)
				}
			}
		})
	}

	start := time.Now()
	for i := range cycles + 1 {
		sa := fmt.Sprintf("sa-%d", i)
		if _, err := env.CreateServiceAccount(ctx, ns, sa, map[string]string{testenv.RoleAnnotation: podRole(i)}); err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			if err := env.DeletePod(ctx, ns, fmt.Sprintf("p%d", i-1)); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			lastDeleted = int64(i - 1)
			mu.Unlock()
		}
		pod, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: fmt.Sprintf("p%d", i), ServiceAccount: sa, Node: h.node, IP: ip})
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		uids = append(uids, pod.UID)
		mu.Unlock()
		if mode == agent.TokenRequired {
			current.Store(&presented{pod: int64(i), token: requestToken(ctx, t, ns, sa, podTokenAudience, pod.Name, string(pod.UID))})
		}
		eventually(t, 10*time.Second, "the new pod to be indexed", func() bool { return h.agent.Pod(pod.UID) != nil })
	}
	close(stop)
	wg.Wait()

	t.Logf("%d cycles in %s: %d responses served, %d refused (404/503 while the address changed hands), %d checked",
		cycles, time.Since(start).Round(time.Millisecond), served.Load(), refused.Load(), checked.Load())
	if c := crossPod.Load(); c > 0 {
		t.Fatalf("%d cross-pod responses with verification required; first: %s", c, *firstViolation.Load())
	}
	if v := violations.Load(); v > 0 {
		t.Fatalf("%d responses carried a deleted pod's role; first: %s", v, *firstViolation.Load())
	}
	if checked.Load() < int64(cycles) {
		t.Fatalf("only %d responses checked over %d cycles: the flood did not overlap the churn", checked.Load(), cycles)
	}
}
