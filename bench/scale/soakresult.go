package main

import (
	"fmt"
	"slices"
	"time"
)

// Tolerances of the schedule check: a refresh timer may fire late on a busy
// machine (scheduling, the refresh slots), never materially early.
const (
	earlyTolerance = 50 * time.Millisecond
	lateTolerance  = 500 * time.Millisecond
	soakBin        = time.Second
)

// soakResult is what the soak measured, and what analyse derives from it.
type soakResult struct {
	cfg                     soakConfig
	policy                  policy
	agentStart, runStart    time.Time
	runEnd                  time.Time
	warmup                  time.Duration
	load                    soakLoad
	waited, refreshFailures float64
	calls                   []stsCall
	warmupCalls, runCalls   int
	// plannedLo and plannedHi bound the refreshes the policy plans in the
	// run, summed over entries; plannedMean is the long-run expectation.
	plannedLo, plannedHi int
	plannedMean          float64
	minCalls, maxCalls   int // per entry, in the run
	// outside counts intervals off the schedule, stalled entries that
	// stopped refreshing, offCount entries with too many or too few calls.
	outside, stalled, offCount int
	shortest, longest          time.Duration
	cycles                     []cycleStat
	binsPrefetch, binsRefresh  []int // soakBin bins from agentStart
	runMaxMean, uniformMaxMean float64
	heap                       heapTrend // live heap of the process, first third of the run → last
}

// cycleStat describes the k-th refresh of every entry after warm-up.
type cycleStat struct {
	k      int
	spread float64 // seconds between the 5th and 95th percentile of the k-th refreshes
	peak   int     // most k-th refreshes in one soakBin
}

// analyse checks every entry's calls against the policy and derives the
// distribution figures. Calls after runEnd are ignored.
func (r *soakResult) analyse() {
	lo, _, hi := r.policy.delay()
	plo, mean, phi := r.policy.period()
	byEntry := map[string][]stsCall{}
	for _, c := range r.calls {
		if c.at.After(r.runEnd) {
			continue
		}
		byEntry[c.session] = append(byEntry[c.session], c)
		if c.at.Before(r.runStart) {
			r.warmupCalls++
		} else {
			r.runCalls++
		}
	}
	r.minCalls, r.shortest = 1<<31-1, time.Duration(1<<63-1)
	var kth [][]float64 // kth[k-1]: the k-th run-time call of each entry, seconds from agentStart
	for _, calls := range byEntry {
		slices.SortFunc(calls, func(a, b stsCall) int { return a.at.Compare(b.at) })
		// The anchor is the entry's last call before the run: the fetch
		// whose credentials the run starts with.
		first := 0
		for first+1 < len(calls) && calls[first+1].at.Before(r.runStart) {
			first++
		}
		run := calls[first:]
		// Over T after its anchor an entry refreshes between T/longest
		// and T/shortest periods (whole refreshes only).
		window := r.runEnd.Sub(run[0].at)
		fewest, most := int(window/(phi+lateTolerance)), int(window/(plo-earlyTolerance))
		r.plannedLo, r.plannedHi = r.plannedLo+fewest, r.plannedHi+most
		r.plannedMean += float64(window) / float64(mean)
		n := len(run) - 1
		if n < fewest || n > most {
			r.offCount++
		}
		r.minCalls, r.maxCalls = min(r.minCalls, n), max(r.maxCalls, n)
		for i := 1; i < len(run); i++ {
			// The delay runs from the previous fetch's landing (its answer)
			// to this call: a call that waited for a refresh slot does not
			// shorten the next delay.
			d := run[i].at.Sub(run[i-1].end)
			r.shortest, r.longest = min(r.shortest, d), max(r.longest, d)
			if d < lo-earlyTolerance || d > hi+lateTolerance {
				r.outside++
			}
			if len(kth) < i {
				kth = append(kth, nil)
			}
			kth[i-1] = append(kth[i-1], run[i].at.Sub(r.agentStart).Seconds())
		}
		if r.runEnd.Sub(run[len(run)-1].at) > phi+lateTolerance {
			r.stalled++
		}
	}
	for i, ts := range kth {
		if len(ts) < len(byEntry) {
			break // an incomplete cycle says nothing about spread
		}
		r.cycles = append(r.cycles, cycleStat{k: i + 1, spread: spreadOf(ts), peak: peakBin(ts, soakBin.Seconds())})
	}

	// Histograms over the whole session; the max/mean ratio over the run.
	firsts := map[string]bool{}
	var pre, ref, inRun []float64
	for _, c := range r.calls {
		if c.at.After(r.runEnd) {
			continue
		}
		t := c.at.Sub(r.agentStart).Seconds()
		if !firsts[c.session] {
			firsts[c.session] = true
			pre = append(pre, t)
			continue
		}
		ref = append(ref, t)
		if !c.at.Before(r.runStart) {
			inRun = append(inRun, c.at.Sub(r.runStart).Seconds())
		}
	}
	n := int(r.runEnd.Sub(r.agentStart) / soakBin)
	r.binsPrefetch, r.binsRefresh = binCounts(pre, soakBin.Seconds(), n), binCounts(ref, soakBin.Seconds(), n)
	runBins := int(r.runEnd.Sub(r.runStart) / soakBin)
	r.runMaxMean = maxOverMean(binCounts(inRun, soakBin.Seconds(), runBins))
	r.uniformMaxMean = uniformMaxOverMean(len(inRun), runBins, 200)
}

// scheduled reports whether every entry refreshed exactly as the policy
// plans: no interval off the schedule, none stalled, none with an extra or a
// missing refresh.
func (r *soakResult) scheduled() bool { return r.outside == 0 && r.stalled == 0 && r.offCount == 0 }

// wavesDamp is the verdict on synchronisation: the first refresh after a
// simultaneous start is spread over at least half the jitter window, and no
// later cycle is bunched tighter than the first (jitter accumulates; nothing
// pulls entries back together).
func (r *soakResult) wavesDamp() bool {
	if len(r.cycles) < 2 {
		return false
	}
	window := r.policy.RefreshJitter * r.policy.lifetime.Seconds()
	first := r.cycles[0].spread
	for _, c := range r.cycles[1:] {
		if c.spread < first*0.9 {
			return false
		}
	}
	return first >= window/2
}

func (r *soakResult) tables() []table {
	c, p := r.cfg, r.policy
	lo, _, hi := p.delay()
	_, mean, _ := p.period()
	l := r.load
	cycles := r.runEnd.Sub(r.runStart).Seconds() / mean.Seconds()
	main := table{
		Title: fmt.Sprintf("Soak: %d entries (%d pods × %d ServiceAccounts), lifetime %s, %s (≈ %.0f refresh cycles), %.0f req/s per pod",
			c.entries, c.entries, c.entries, c.lifetime, c.duration, cycles, c.perPodRate),
		Header: []string{"figure", "value", "expected"},
		Rows: [][]string{
			{"requests (200 / other)", fmt.Sprintf("%d (%d / %s)", l.requests, l.ok, statusCounts(l.statuses)), ""},
			{"requests that waited on STS (miss + coalesced)", fmt.Sprintf("%.0f", r.waited), "0 " + verdict(r.waited == 0)},
			{"expired credentials served", fmt.Sprint(l.expired), "0 " + verdict(l.expired == 0)},
			{"served with < safety margin left", fmt.Sprint(l.belowMargin), "0"},
			{"least lifetime left in a response", fmtDur(l.minRemaining), fmt.Sprintf("> %s", fmtDur(p.SafetyMargin))},
			{"request latency p50 / p99 / max", durs3(l.latencies), ""},
			{"STS calls in warm-up", fmt.Sprint(r.warmupCalls), fmt.Sprintf("%d (one per entry)", c.entries)},
			{"STS calls in the run", fmt.Sprint(r.runCalls), fmt.Sprintf("entries × planned refreshes: %d … %d (mean %.0f)", r.plannedLo, r.plannedHi, r.plannedMean)},
			{"refreshes per entry (min / max); entries off their plan", fmt.Sprintf("%d / %d; %d", r.minCalls, r.maxCalls, r.offCount), "0 " + verdict(r.offCount == 0)},
			{"refresh delay: an entry's answer → its next call (min / max)", fmt.Sprintf("%s / %s", fmtDur(r.shortest), fmtDur(r.longest)), fmt.Sprintf("policy: %s … %s", fmtDur(lo), fmtDur(hi))},
			{"intervals off the schedule; stalled entries", fmt.Sprintf("%d; %d", r.outside, r.stalled), "0; 0 " + verdict(r.outside == 0 && r.stalled == 0)},
			{"refresh failures", fmt.Sprintf("%.0f", r.refreshFailures), "0"},
			{fmt.Sprintf("per-%s-bin max/mean of STS calls in the run", soakBin), fmt.Sprintf("%.2f", r.runMaxMean), fmt.Sprintf("uniform random: %.2f", r.uniformMaxMean)},
		},
		Notes: []string{
			fmt.Sprintf("Policy scaled from production: refresh at %.0f %% of the lifetime less up to %.0f %% jitter, refresh-before %s, safety margin %s; STS latency %s. Time compression %.0fx (kube client QPS and STS budget scaled alike). The cache keeps Expiration in whole seconds, as served, so it sees 1 s less lifetime at worst: hence the policy's delay window.",
				p.RefreshFraction*100, p.RefreshJitter*100, p.RefreshBefore, p.SafetyMargin, p.latency, float64(time.Hour)/float64(c.lifetime)),
			fmt.Sprintf("Worst start: every pod was running before the agent started, so all entries were fetched within %s of each other; warm-up (agent start → every pod served) %s.", fmtDur(spreadOfPrefetch(r)), fmtDur(r.warmup)),
			"Schedule check: each refresh call must come within the policy's delay of the previous answer for that entry (−50 ms / +500 ms for timers and refresh slots), each entry's count must fit its window, and its last call must be within one period of the end.",
		},
	}
	window := p.RefreshJitter * p.lifetime.Seconds()
	spread := table{
		Title:  "Soak: refresh times, cycle by cycle (the k-th refresh of every entry after warm-up)",
		Header: []string{"cycle", "spread p5–p95", "peak per " + soakBin.String(), "peak / entries"},
		Notes: []string{
			fmt.Sprintf("A synchronised wave keeps its spread near 0 and its peak near %d (all entries). The jitter window is %.1fs; spread should start at about 90 %% of it and grow every cycle (jitter accumulates).", c.entries, window),
		},
	}
	for _, cy := range r.cycles {
		spread.Rows = append(spread.Rows, []string{fmt.Sprint(cy.k), fmt.Sprintf("%.2fs", cy.spread), fmt.Sprint(cy.peak), fmt.Sprintf("%.0f %%", 100*float64(cy.peak)/float64(c.entries))})
	}
	return []table{main, spread}
}

// spreadOfPrefetch is the time between the first and the last entry's first
// STS call.
func spreadOfPrefetch(r *soakResult) time.Duration {
	firsts := map[string]time.Time{}
	for _, c := range r.calls {
		if _, ok := firsts[c.session]; !ok {
			firsts[c.session] = c.at
		}
	}
	var lo, hi time.Time
	for _, t := range firsts {
		if lo.IsZero() || t.Before(lo) {
			lo = t
		}
		hi = later(hi, t)
	}
	return hi.Sub(lo)
}

func (r *soakResult) checks() []check {
	var firstSpread, lastSpread string
	if n := len(r.cycles); n > 0 {
		firstSpread, lastSpread = fmt.Sprintf("%.2fs", r.cycles[0].spread), fmt.Sprintf("%.2fs", r.cycles[n-1].spread)
	}
	return []check{
		{"soak", "requests that waited on STS", fmt.Sprintf("%.0f of %d", r.waited, r.load.requests), "= 0", verdict(r.waited == 0)},
		{"soak", "expired credentials served", fmt.Sprint(r.load.expired), "= 0", verdict(r.load.expired == 0)},
		{"soak", "STS calls vs entries × refreshes", fmt.Sprintf("%d in %d … %d", r.runCalls, r.plannedLo, r.plannedHi), "every entry on plan", verdict(r.scheduled())},
		{"soak", "refresh spread cycle 1 → last", fmt.Sprintf("%s → %s (%d cycles)", firstSpread, lastSpread, len(r.cycles)), "no re-bunching", verdict(r.wavesDamp())},
		{"soak", "per-second max/mean of STS calls", fmt.Sprintf("%.2f", r.runMaxMean), fmt.Sprintf("uniform %.2f", r.uniformMaxMean), ""},
		{"soak", "live heap after warm-up, first third → last", r.heap.String(), fmt.Sprintf("growth ≤ %.0f %%", 100*heapGrowthLimit), verdict(r.heap.flat())},
	}
}
