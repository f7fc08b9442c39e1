package main

import (
	"fmt"
	"image/color"
	"os"
	"slices"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// results holds what each scenario measured; nil for one not run.
type results struct {
	storm  *stormResult
	churn  *churnResult
	soak   *soakResult
	memory *memoryResult
}

var (
	blue      = color.RGBA{31, 119, 180, 255}
	lightBlue = color.RGBA{158, 202, 225, 255}
	orange    = color.RGBA{255, 127, 14, 255}
	green     = color.RGBA{44, 160, 44, 255}
	red       = color.RGBA{214, 39, 40, 255}
	grey      = color.RGBA{150, 150, 150, 255}
	ink       = color.RGBA{40, 40, 40, 255}
)

// writeFigures draws the four scenarios as a 2×2 PNG at path.
func writeFigures(path string, r *results) error {
	plots := [][]*plot.Plot{
		{stormPlot(r.storm), churnPlot(r.churn)},
		{soakPlot(r.soak), memoryPlot(r.memory)},
	}
	img := vgimg.NewWith(vgimg.UseWH(16*vg.Inch, 12*vg.Inch), vgimg.UseDPI(100))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 2, PadX: vg.Inch / 4, PadY: vg.Inch / 4, PadTop: vg.Inch / 8, PadBottom: vg.Inch / 8, PadLeft: vg.Inch / 8, PadRight: vg.Inch / 8}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		for j, p := range plots[i] {
			p.Draw(canvases[i][j])
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// newPlot returns a plot with a title (notes on the lines under it), axis
// labels, a grid and the legend at the top right.
func newPlot(title, x, y string, notes ...string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	for _, n := range notes {
		p.Title.Text += "\n" + n
	}
	p.Title.TextStyle.Font.Size = vg.Points(14)
	p.X.Label.Text, p.Y.Label.Text = x, y
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	return p
}

func notRun(title string) *plot.Plot { return newPlot(title+" (not run)", "", "") }

// line adds the polyline (xs[i], ys[i]) to p under label; dashed if asked.
func line(p *plot.Plot, xs, ys []float64, col color.Color, label string, dashed bool) {
	pts := make(plotter.XYs, len(xs))
	for i := range xs {
		pts[i].X, pts[i].Y = xs[i], ys[i]
	}
	l, err := plotter.NewLine(pts)
	if err != nil {
		return // no points: nothing to draw
	}
	l.Color, l.Width = col, vg.Points(2)
	if dashed {
		l.Dashes = []vg.Length{vg.Points(6), vg.Points(4)}
	}
	p.Add(l)
	if label != "" {
		p.Legend.Add(label, l)
	}
}

// bars adds a bar chart of vs to p, shifted by offset bar widths; on, when
// set, is the chart these bars stack on.
func bars(p *plot.Plot, vs []float64, width vg.Length, offset float64, col color.Color, label string, on *plotter.BarChart) *plotter.BarChart {
	b, err := plotter.NewBarChart(plotter.Values(vs), width)
	if err != nil {
		return nil
	}
	b.Color, b.LineStyle.Width = col, 0
	b.Offset = vg.Length(offset) * width
	if on != nil {
		b.StackOn(on)
	}
	p.Add(b)
	if label != "" {
		p.Legend.Add(label, b)
	}
	return b
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

func stormPlot(r *stormResult) *plot.Plot {
	const title = "cold storm: time to first credential"
	if r == nil {
		return notRun(title)
	}
	p := newPlot(title, "ms", "% at or below",
		fmt.Sprintf("%d pods, %d SAs: %d STS calls, %d TokenRequests", r.cfg.pods, r.cfg.serviceAccounts, r.stsCalls, r.tokenRequests))
	xs, ys := cdf(r.createToCreds)
	line(p, xs, ys, blue, "pod created → 200", false)
	xs, ys = cdf(r.requestToCreds)
	line(p, xs, ys, orange, "request → 200", false)
	p.Legend.Top = false
	p.Legend.Left = false
	p.X.Min, p.Y.Min, p.Y.Max = 0, 0, 100
	return p
}

func churnPlot(r *churnResult) *plot.Plot {
	const title = "churn: hot-path p99 per round"
	if r == nil || len(r.order) == 0 {
		return notRun(title)
	}
	steady, churn := make([]float64, len(r.order)), make([]float64, len(r.order))
	next := map[string]int{}
	var names []string
	for i, name := range r.order {
		s, to := r.steady, steady
		if name == "churn" {
			s, to = r.churn, churn
		}
		to[i] = float64(s.Results[next[name]].P99) / float64(time.Millisecond)
		next[name]++
		names = append(names, fmt.Sprint(i+1))
	}
	p := newPlot(title, "round (in order run)", "p99 ms", fmt.Sprintf("median p99 ratio churn/steady %.2fx", r.ratio().P99))
	w := vg.Points(24)
	bars(p, steady, w, 0, blue, "steady", nil)
	bars(p, churn, w, 0, orange, fmt.Sprintf("%.0f pods/s churn", r.cfg.rate), nil)
	n := float64(len(r.order))
	sp := float64(r.steady.Summary().P99) / float64(time.Millisecond)
	cp := float64(r.churn.Summary().P99) / float64(time.Millisecond)
	line(p, []float64{-0.5, n - 0.5}, []float64{sp, sp}, blue, "median steady", true)
	line(p, []float64{-0.5, n - 0.5}, []float64{cp, cp}, orange, "median churn", true)
	p.NominalX(names...)
	p.Y.Min = 0
	p.Y.Max = max(slices.Max(steady), slices.Max(churn)) * 1.3
	return p
}

func soakPlot(r *soakResult) *plot.Plot {
	const title = "soak: STS calls per second"
	if r == nil || len(r.binsRefresh) == 0 {
		return notRun(title)
	}
	pre, ref := make([]float64, len(r.binsRefresh)), make([]float64, len(r.binsRefresh))
	top := 1.0
	for i := range r.binsRefresh {
		pre[i], ref[i] = float64(r.binsPrefetch[i]), float64(r.binsRefresh[i])
		top = max(top, pre[i]+ref[i])
	}
	p := newPlot(title, "seconds since the agent started", "calls per "+soakBin.String(),
		fmt.Sprintf("%d entries, lifetime %s; max/mean %.2f (uniform %.2f)", r.cfg.entries, r.cfg.lifetime, r.runMaxMean, r.uniformMaxMean))
	w := vg.Points(4)
	first := bars(p, pre, w, 0, grey, "first fetch", nil)
	bars(p, ref, w, 0, green, "refresh", first)
	start := r.runStart.Sub(r.agentStart).Seconds() / soakBin.Seconds()
	line(p, []float64{start, start}, []float64{0, top * 1.2}, red, "run starts", true)
	n := float64(len(r.binsRefresh))
	mean := float64(r.runCalls) / r.runEnd.Sub(r.runStart).Seconds() * soakBin.Seconds()
	line(p, []float64{0, n}, []float64{mean, mean}, ink, "mean in the run", true)
	p.Y.Min, p.Y.Max = 0, top*1.25
	return p
}

func memoryPlot(r *memoryResult) *plot.Plot {
	const title = "memory: agent binary"
	if r == nil || len(r.samples) == 0 {
		return notRun(title)
	}
	const mib = 1 << 20
	anon, file, live := make([]float64, len(r.samples)), make([]float64, len(r.samples)), make([]float64, len(r.samples))
	var names []string
	top := float64(rssGoal) / mib
	for i, s := range r.samples {
		anon[i], file[i], live[i] = s.rssAnon/mib, s.rssFile/mib, s.heapLive/mib
		top = max(top, s.rss/mib)
		names = append(names, s.plot)
	}
	p := newPlot(title, "pods / ServiceAccounts on the node", "MiB",
		fmt.Sprintf("live heap: %s per pod, %s per credential entry", fmtBytes(r.perPod), fmtBytes(r.perEntry)))
	w := vg.Points(36)
	a := bars(p, anon, w, -0.5, blue, "RSS: anonymous", nil)
	bars(p, file, w, -0.5, lightBlue, "RSS: file (binary)", a)
	bars(p, live, w, 0.5, orange, "heap live", nil)
	g := float64(rssGoal) / mib
	n := float64(len(r.samples))
	line(p, []float64{-0.5, n - 0.5}, []float64{g, g}, red, fmt.Sprintf("goal (RSS, %d pods)", r.cfg.pods[1]), true)
	p.NominalX(names...)
	p.Y.Min, p.Y.Max = 0, top*1.3
	return p
}
