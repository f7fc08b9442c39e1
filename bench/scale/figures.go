package main

import (
	"fmt"
	"image"
	"image/png"
	"os"
	"slices"
	"time"
)

// results holds what each scenario measured; nil for one not run.
type results struct {
	storm  *stormResult
	churn  *churnResult
	soak   *soakResult
	memory *memoryResult
}

// writeFigures draws the four scenarios as a 2×2 PNG at path.
func writeFigures(path string, r *results) error {
	const w, h = 1600, 1200
	c := newCanvas(w, h)
	panels := []image.Rectangle{
		image.Rect(0, 0, w/2, h/2), image.Rect(w/2, 0, w, h/2),
		image.Rect(0, h/2, w/2, h), image.Rect(w/2, h/2, w, h),
	}
	drawStorm(c, panels[0], r.storm)
	drawChurn(c, panels[1], r.churn)
	drawSoak(c, panels[2], r.soak)
	drawMemory(c, panels[3], r.memory)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, c); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func notRun(c *canvas, panel image.Rectangle, title string) {
	c.text(panel.Min.X+16, panel.Min.Y+16, title, 2, ink)
	c.text(panel.Min.X+panel.Dx()/2-textWidth("not run", 3)/2, panel.Min.Y+panel.Dy()/2, "not run", 3, grey)
}

// cdf returns ds sorted, in ms, against the percentage at or below each.
func cdf(ds []time.Duration) (xs, ys []float64) {
	s := slices.Clone(ds)
	slices.Sort(s)
	for i, d := range s {
		xs = append(xs, float64(d)/float64(time.Millisecond))
		ys = append(ys, 100*float64(i+1)/float64(len(s)))
	}
	return xs, ys
}

func drawStorm(c *canvas, panel image.Rectangle, r *stormResult) {
	const title = "cold storm: time to first credential"
	if r == nil {
		notRun(c, panel, title)
		return
	}
	top := float64(max(quantile(r.createToCreds, 1), quantile(r.requestToCreds, 1))) / float64(time.Millisecond)
	f := newFrame(c, panel, title, "ms", "% at or below", 0, top*1.05+1, 0, 100, true)
	xs, ys := cdf(r.createToCreds)
	f.polyline(xs, ys, blue)
	xs, ys = cdf(r.requestToCreds)
	f.polyline(xs, ys, orange)
	f.legendBelow(2)
	f.legend("pod created → 200", blue)
	f.legend("request → 200", orange)
	f.note(0, fmt.Sprintf("%d pods, %d SAs", r.cfg.pods, r.cfg.serviceAccounts))
	f.note(1, fmt.Sprintf("STS calls %d", r.stsCalls))
	f.note(2, fmt.Sprintf("TokenRequests %d", r.tokenRequests))
}

func drawChurn(c *canvas, panel image.Rectangle, r *churnResult) {
	const title = "churn: hot-path p99 per round"
	if r == nil || len(r.order) == 0 {
		notRun(c, panel, title)
		return
	}
	var p99s []float64
	next := map[string]int{}
	for _, name := range r.order {
		s := r.steady
		if name == "churn" {
			s = r.churn
		}
		p99s = append(p99s, float64(s.Results[next[name]].P99)/float64(time.Millisecond))
		next[name]++
	}
	f := newFrame(c, panel, title, "round (in order run)", "p99 ms", 0, float64(len(p99s)), 0, slices.Max(p99s)*1.3, false)
	for i, v := range p99s {
		col := blue
		if r.order[i] == "churn" {
			col = orange
		}
		f.bar(float64(i)+0.15, float64(i)+0.85, 0, v, col)
		f.xLabelAt(float64(i)+0.5, fmt.Sprint(i+1))
	}
	f.hline(float64(r.steady.Summary().P99)/float64(time.Millisecond), blue, true)
	f.hline(float64(r.churn.Summary().P99)/float64(time.Millisecond), orange, true)
	f.legend("steady", blue)
	f.legend(fmt.Sprintf("%.0f pods/s churn", r.cfg.rate), orange)
	f.note(0, fmt.Sprintf("median p99 ratio %.2fx", r.ratio().P99))
}

func drawSoak(c *canvas, panel image.Rectangle, r *soakResult) {
	const title = "soak: STS calls per second"
	if r == nil || len(r.binsRefresh) == 0 {
		notRun(c, panel, title)
		return
	}
	top := 1
	for i := range r.binsRefresh {
		top = max(top, r.binsRefresh[i]+r.binsPrefetch[i])
	}
	width := soakBin.Seconds()
	n := float64(len(r.binsRefresh))
	f := newFrame(c, panel, title, "seconds since the agent started", "calls per "+soakBin.String(), 0, n*width, 0, float64(top)*1.25, true)
	for i := range r.binsRefresh {
		x := float64(i) * width
		pre, ref := float64(r.binsPrefetch[i]), float64(r.binsRefresh[i])
		f.bar(x+0.05*width, x+0.95*width, 0, pre, grey)
		f.bar(x+0.05*width, x+0.95*width, pre, pre+ref, green)
	}
	f.vline(r.runStart.Sub(r.agentStart).Seconds(), red)
	mean := float64(r.runCalls) / r.runEnd.Sub(r.runStart).Seconds() * width
	f.hline(mean, ink, true)
	f.legend("first fetch", grey)
	f.legend("refresh", green)
	f.legend("run starts", red)
	f.note(0, fmt.Sprintf("%d entries, lifetime %s", r.cfg.entries, r.cfg.lifetime))
	f.note(1, fmt.Sprintf("max/mean %.2f (uniform %.2f)", r.runMaxMean, r.uniformMaxMean))
}

func drawMemory(c *canvas, panel image.Rectangle, r *memoryResult) {
	const title = "memory: agent binary"
	if r == nil || len(r.samples) == 0 {
		notRun(c, panel, title)
		return
	}
	const mib = 1 << 20
	top := float64(rssGoal) / mib
	for _, s := range r.samples {
		top = max(top, s.rss/mib, s.peakRSS/mib)
	}
	f := newFrame(c, panel, title, "", "MiB", 0, float64(len(r.samples)), 0, top*1.3, false)
	for i, s := range r.samples {
		x := float64(i)
		f.bar(x+0.15, x+0.5, 0, s.rssAnon/mib, blue)
		f.bar(x+0.15, x+0.5, s.rssAnon/mib, s.rss/mib, lightBlue)
		f.bar(x+0.5, x+0.85, 0, s.heapInuse/mib, orange)
		f.xLabelAt(x+0.5, s.plot)
	}
	f.hline(float64(rssGoal)/mib, red, true)
	f.legend("RSS: anonymous", blue)
	f.legend("RSS: file (binary)", lightBlue)
	f.legend("heap in-use", orange)
	f.legend("goal (RSS, 250 pods)", red)
}
