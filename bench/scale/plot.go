package main

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"strconv"
)

// canvas is an RGBA image with the few drawing operations the figures need.
type canvas struct{ *image.RGBA }

var (
	white     = color.RGBA{255, 255, 255, 255}
	ink       = color.RGBA{40, 40, 40, 255}
	grid      = color.RGBA{225, 225, 225, 255}
	blue      = color.RGBA{31, 119, 180, 255}
	lightBlue = color.RGBA{158, 202, 225, 255}
	orange    = color.RGBA{255, 127, 14, 255}
	green     = color.RGBA{44, 160, 44, 255}
	red       = color.RGBA{214, 39, 40, 255}
	grey      = color.RGBA{150, 150, 150, 255}
)

func newCanvas(w, h int) *canvas {
	c := &canvas{image.NewRGBA(image.Rect(0, 0, w, h))}
	c.fill(c.Bounds(), white)
	return c
}

func (c *canvas) fill(r image.Rectangle, col color.RGBA) {
	r = r.Intersect(c.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			c.SetRGBA(x, y, col)
		}
	}
}

// line draws from (x0, y0) to (x1, y1), width pixels thick (Bresenham with a
// square pen); dash > 0 leaves gaps of dash pixels every dash pixels.
func (c *canvas) line(x0, y0, x1, y1, width, dash int, col color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for n := 0; ; n++ {
		if dash <= 0 || (n/dash)%2 == 0 {
			c.fill(image.Rect(x0-width/2, y0-width/2, x0-width/2+width, y0-width/2+width), col)
		}
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

// text draws s with its top-left corner at (x, y).
func (c *canvas) text(x, y int, s string, scale int, col color.RGBA) {
	for i, r := range []rune(s) {
		g := glyph(r)
		for gy, row := range g {
			for gx, px := range row {
				if px == '#' {
					ox := x + (i*glyphAdvance+gx)*scale
					c.fill(image.Rect(ox, y+gy*scale, ox+scale, y+(gy+1)*scale), col)
				}
			}
		}
	}
}

// textUp draws s reading bottom to top, its baseline's start at (x, y).
func (c *canvas) textUp(x, y int, s string, scale int, col color.RGBA) {
	for i, r := range []rune(s) {
		g := glyph(r)
		for gy, row := range g {
			for gx, px := range row {
				if px == '#' {
					oy := y - (i*glyphAdvance+gx+1)*scale
					c.fill(image.Rect(x+gy*scale, oy, x+(gy+1)*scale, oy+scale), col)
				}
			}
		}
	}
}

// frame is one chart: a plot area inside a panel, with data coordinates
// [x0, x1] × [y0, y1] mapped onto it.
type frame struct {
	c              *canvas
	area           image.Rectangle
	x0, x1, y0, y1 float64
	legendY        int
}

// newFrame draws a panel's title, axes, horizontal grid with y ticks, and,
// if numericX, x ticks; categorical charts label x with xLabelAt.
func newFrame(c *canvas, panel image.Rectangle, title, xLabel, yLabel string, x0, x1, y0, y1 float64, numericX bool) *frame {
	area := image.Rect(panel.Min.X+100, panel.Min.Y+56, panel.Max.X-24, panel.Max.Y-70)
	f := &frame{c: c, area: area, x0: x0, x1: x1, y0: y0, y1: y1, legendY: area.Min.Y + 8}
	c.text(panel.Min.X+16, panel.Min.Y+16, title, 2, ink)
	for _, t := range niceTicks(y0, y1, 6) {
		y := f.py(t)
		c.line(area.Min.X, y, area.Max.X, y, 1, 0, grid)
		label := fmtTick(t)
		c.text(area.Min.X-10-textWidth(label, 2), y-glyphH, label, 2, ink)
	}
	if numericX {
		for _, t := range niceTicks(x0, x1, 8) {
			x := f.px(t)
			c.line(x, area.Max.Y, x, area.Max.Y+6, 1, 0, ink)
			f.xLabelAt(t, fmtTick(t))
		}
	}
	c.line(area.Min.X, area.Max.Y, area.Max.X, area.Max.Y, 2, 0, ink)
	c.line(area.Min.X, area.Min.Y, area.Min.X, area.Max.Y, 2, 0, ink)
	c.text((area.Min.X+area.Max.X-textWidth(xLabel, 2))/2, area.Max.Y+40, xLabel, 2, ink)
	c.textUp(panel.Min.X+16, (area.Min.Y+area.Max.Y+textWidth(yLabel, 2))/2, yLabel, 2, ink)
	return f
}

func (f *frame) px(x float64) int {
	return f.area.Min.X + int(math.Round((x-f.x0)/(f.x1-f.x0)*float64(f.area.Dx())))
}

func (f *frame) py(y float64) int {
	return f.area.Max.Y - int(math.Round((y-f.y0)/(f.y1-f.y0)*float64(f.area.Dy())))
}

// xLabelAt centres s under data x.
func (f *frame) xLabelAt(x float64, s string) {
	f.c.text(f.px(x)-textWidth(s, 2)/2, f.area.Max.Y+12, s, 2, ink)
}

// polyline joins the points (xs[i], ys[i]).
func (f *frame) polyline(xs, ys []float64, col color.RGBA) {
	for i := 1; i < len(xs); i++ {
		f.c.line(f.px(xs[i-1]), f.py(ys[i-1]), f.px(xs[i]), f.py(ys[i]), 3, 0, col)
	}
}

// bar fills [xa, xb] × [from, to].
func (f *frame) bar(xa, xb, from, to float64, col color.RGBA) {
	f.c.fill(image.Rect(f.px(xa), f.py(to), max(f.px(xb), f.px(xa)+1), f.py(from)), col)
}

// hline draws a horizontal line across the plot at y, dashed if asked.
func (f *frame) hline(y float64, col color.RGBA, dashed bool) {
	dash := 0
	if dashed {
		dash = 8
	}
	f.c.line(f.area.Min.X, f.py(y), f.area.Max.X, f.py(y), 2, dash, col)
}

// vline draws a vertical dashed line at x.
func (f *frame) vline(x float64, col color.RGBA) {
	f.c.line(f.px(x), f.area.Min.Y, f.px(x), f.area.Max.Y, 2, 6, col)
}

// legend adds one entry under the previous ones, at the plot's top right.
func (f *frame) legend(label string, col color.RGBA) {
	x := f.area.Max.X - textWidth(label, 2) - 40
	f.c.fill(image.Rect(x, f.legendY+2, x+20, f.legendY+12), col)
	f.c.text(x+28, f.legendY, label, 2, ink)
	f.legendY += 24
}

// legendBelow moves the next n legend entries to the plot's bottom right,
// for charts whose data fill the top right.
func (f *frame) legendBelow(n int) { f.legendY = f.area.Max.Y - 8 - 24*n }

// note writes a line of text at the plot's top left, below earlier notes.
func (f *frame) note(line int, s string) {
	f.c.text(f.area.Min.X+12, f.area.Min.Y+8+line*24, s, 2, ink)
}

// niceTicks returns about n round values (1, 2 or 5 × 10^k apart) covering
// [lo, hi].
func niceTicks(lo, hi float64, n int) []float64 {
	if !(hi > lo) || n < 1 {
		return []float64{lo}
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if step = m * mag; step >= raw {
			break
		}
	}
	var ticks []float64
	for t := math.Ceil(lo/step) * step; t <= hi+step*1e-9; t += step {
		ticks = append(ticks, math.Round(t/step)*step)
	}
	return ticks
}

// fmtTick prints a tick value without needless digits.
func fmtTick(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e9 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return fmt.Sprintf("%.3g", v)
}

func abs(v int) int  { return max(v, -v) }
func sign(v int) int { return min(max(v, -1), 1) }
