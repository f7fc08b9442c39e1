package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/podcreds/podcreds/internal/testkit/testenv"
)

// binaryAgent is the podcreds binary running as its own process.
type binaryAgent struct {
	cmd                 *exec.Cmd
	done                chan struct{}
	url, metrics, ready string
}

// startBinary runs the agent for node.
func startBinary(ctx context.Context, env *testenv.Env, cfg memoryConfig, kubeconfig, node string) (*binaryAgent, error) {
	listen, health, metrics := freeAddr(), freeAddr(), freeAddr()
	name := "agent-" + node
	log, err := os.Create(filepath.Join(cfg.outDir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(cfg.agentBin, "agent", "--node-name="+node, "--kubeconfig="+kubeconfig,
		"--listen="+listen, "--ecs-listen=none", "--health-listen="+health, "--metrics-listen="+metrics,
		"--sts-endpoint="+env.STSEndpoint, "--rate-limit=0", "--log-level=warn")
	a := &binaryAgent{url: "http://" + listen + "/v1/credentials", metrics: "http://" + metrics + "/metrics", ready: "http://" + health + "/readyz"}
	if err := a.start(ctx, cmd, log, name); err != nil {
		return nil, err
	}
	return a, nil
}

// start runs cmd, logging to log, and waits for a.ready to answer.
func (a *binaryAgent) start(ctx context.Context, cmd *exec.Cmd, log *os.File, node string) error {
	cmd.Stdout, cmd.Stderr = log, log
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		log.Close()
		return err
	}
	a.cmd, a.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); log.Close(); close(a.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := httpGet(ctx, a.ready); err == nil {
			return nil
		}
		select {
		case <-a.done:
			return fmt.Errorf("%s exited before it was ready; see %s", node, log.Name())
		case <-ctx.Done():
			a.stop()
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			a.stop()
			return fmt.Errorf("%s not ready after 30s; see %s", node, log.Name())
		}
	}
}

// settledSample waits for background work to end, has the agent collect
// its garbage several times, then samples. The live heap is the least any
// of those collections found: one that ran while a request or a watch event
// was in flight counts what that work held too.
func (a *binaryAgent) settledSample(label string, pods, entries int, servedIn time.Duration) (memSample, error) {
	time.Sleep(2 * time.Second)
	if err := a.waitEntries(entries); err != nil {
		return memSample{}, err
	}
	live, err := a.collect(4)
	if err != nil {
		return memSample{}, err
	}
	s, err := a.sample(label, pods)
	s.heapLive, s.servedIn = live, servedIn
	return s, err
}

// waitEntries waits up to 30 s for the agent's credential cache to hold n
// entries: the agent fetches for the pods it knows in the background.
func (a *binaryAgent) waitEntries(n int) error {
	var have float64
	for range 300 {
		body, err := httpGet(context.Background(), a.metrics)
		if err != nil {
			return err
		}
		if have, _ = textMetric(body, "podcreds_cache_entries"); have >= float64(n) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("the agent holds %v credential entries after 30 s, want %d", have, n)
}

// collect makes the agent run n more garbage collections without touching
// its state (each /metrics scrape allocates, so scrapes reach the heap goal)
// and returns the least live heap they found. Bounded: an agent that does
// not collect within 50 000 scrapes is an error.
func (a *binaryAgent) collect(n float64) (float64, error) {
	read := func() (count, live float64, err error) {
		body, err := httpGet(context.Background(), a.metrics)
		if err != nil {
			return 0, 0, err
		}
		count, ok := textMetric(body, "go_gc_duration_seconds_count")
		live, ok2 := textMetric(body, "go_gc_heap_live_bytes")
		if !ok || !ok2 {
			return 0, 0, fmt.Errorf("agent metrics lack go_gc_duration_seconds_count or go_gc_heap_live_bytes")
		}
		return count, live, nil
	}
	start, _, err := read()
	if err != nil {
		return 0, err
	}
	least := math.Inf(1)
	for range 50_000 {
		count, live, err := read()
		if err != nil {
			return 0, err
		}
		if count > start {
			least = min(least, live)
		}
		if count >= start+n {
			return least, nil
		}
	}
	return 0, fmt.Errorf("the agent ran fewer than %v garbage collections in 50 000 scrapes of /metrics", n)
}

// sample reads the process's resident set from /proc and the Go heap from
// the agent's own /metrics.
func (a *binaryAgent) sample(label string, pods int) (memSample, error) {
	s := memSample{label: label, pods: pods}
	status, err := os.Open(fmt.Sprintf("/proc/%d/status", a.cmd.Process.Pid))
	if err != nil {
		return s, err
	}
	defer status.Close()
	sc := bufio.NewScanner(status)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[2] == "kB" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			switch f[0] {
			case "VmRSS:":
				s.rss = kb * 1024
			case "VmHWM:":
				s.peakRSS = kb * 1024
			case "RssAnon:":
				s.rssAnon = kb * 1024
			case "RssFile:":
				s.rssFile = kb * 1024
			}
		}
	}
	if s.binary, err = readBinaryMaps(a.cmd.Process.Pid, a.cmd.Path); err != nil {
		return s, err
	}
	body, err := httpGet(context.Background(), a.metrics)
	if err != nil {
		return s, fmt.Errorf("agent metrics: %w", err)
	}
	for name, v := range map[string]*float64{
		"go_gc_heap_live_bytes": &s.heapLive, "go_memstats_heap_inuse_bytes": &s.heapInuse,
		"go_goroutines": &s.goroutines, "podcreds_cache_entries": &s.entries, "podcreds_pods_indexed": &s.indexed,
	} {
		var ok bool
		if *v, ok = textMetric(body, name); !ok {
			return s, fmt.Errorf("agent metrics lack %s", name)
		}
	}
	return s, nil
}

// binaryMaps is how much of a process's own executable is resident, by
// mapping: text (r-xp) and read-only data with the symbol-less tables the
// runtime reads (r--p), in bytes.
type binaryMaps struct {
	textSize, textRSS, roSize, roRSS float64
}

// readBinaryMaps sums /proc/<pid>/smaps over the mappings of path.
func readBinaryMaps(pid int, path string) (binaryMaps, error) {
	var m binaryMaps
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return m, err
	}
	defer f.Close()
	var size, rss *float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":"):
			size, rss = nil, nil // a mapping's header line
			if len(fields) == 6 && fields[5] == path {
				switch fields[1] {
				case "r-xp":
					size, rss = &m.textSize, &m.textRSS
				case "r--p":
					size, rss = &m.roSize, &m.roRSS
				}
			}
		case len(fields) == 3 && fields[2] == "kB" && size != nil:
			kb, _ := strconv.ParseFloat(fields[1], 64)
			switch fields[0] {
			case "Size:":
				*size += kb * 1024
			case "Rss:":
				*rss += kb * 1024
			}
		}
	}
	return m, sc.Err()
}

// stop sends SIGTERM and waits for a graceful exit, killing after 15 s.
func (a *binaryAgent) stop() {
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(15 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
	}
}

func httpGet(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err == nil && res.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s answered %d", url, res.StatusCode)
	}
	return string(b), err
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err) // loopback with port 0 does not fail
	}
	defer l.Close()
	return l.Addr().String()
}
