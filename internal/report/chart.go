package report

import (
	"fmt"
	"html/template"
	"math"
	"strings"
	"time"
)

// chart is one SVG chart over the run's time axis: lines and bars drawn from series, with the
// same x scale in every chart of a report so throughput, concurrency and 429s line up.
type chart struct {
	ID, Title, Unit string
	Width, Height   int
	Lines           []line
	Bars            []bar
	YMax            float64
	YTicks          []tick
	XTicks          []tick
	Legend          []legend
	Empty           string // shown instead of the plot when there is nothing to draw
}

type line struct {
	Class  string
	Points string // SVG points attribute
	Dashed bool
}

type bar struct {
	X, Y, W, H float64
	Title      string
}

type tick struct {
	Pos   float64
	Label string
}

type legend struct{ Class, Label string }

// Plot area margins inside the SVG.
const (
	padLeft, padRight, padTop, padBottom = 56.0, 12.0, 12.0, 28.0
)

// axis maps run time to x.
type axis struct {
	start, end time.Time
	width      float64
}

func (a axis) x(t time.Time) float64 {
	span := a.end.Sub(a.start).Seconds()
	if span <= 0 {
		return padLeft
	}
	f := t.Sub(a.start).Seconds() / span
	return padLeft + math.Max(0, math.Min(1, f))*(a.width-padLeft-padRight)
}

type xy struct {
	T time.Time
	V float64
}

func newChart(id, title, unit string, a axis, height int) *chart {
	c := &chart{ID: id, Title: title, Unit: unit, Width: int(a.width), Height: height}
	span := a.end.Sub(a.start)
	step := niceStep(span.Seconds() / 6)
	for s := 0.0; s <= span.Seconds()+1e-9; s += step {
		c.XTicks = append(c.XTicks, tick{Pos: a.x(a.start.Add(time.Duration(s * float64(time.Second)))), Label: fmtSeconds(s)})
	}
	return c
}

// scale fixes the y range to cover ymax, with round ticks.
func (c *chart) scale(ymax float64) {
	if ymax <= 0 {
		ymax = 1
	}
	step := niceStep(ymax / 4)
	c.YMax = math.Ceil(ymax/step) * step
	for v := 0.0; v <= c.YMax+1e-9; v += step {
		c.YTicks = append(c.YTicks, tick{Pos: c.y(v), Label: fmtNumber(v)})
	}
}

func (c *chart) y(v float64) float64 {
	h := float64(c.Height) - padTop - padBottom
	return padTop + h - math.Max(0, math.Min(1, v/c.YMax))*h
}

func (c *chart) addLine(class, label string, a axis, pts []xy, dashed bool) {
	if len(pts) == 0 {
		return
	}
	var b strings.Builder
	for i, p := range pts {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%.1f,%.1f", a.x(p.T), c.y(p.V))
	}
	c.Lines = append(c.Lines, line{Class: class, Points: b.String(), Dashed: dashed})
	c.Legend = append(c.Legend, legend{Class: class, Label: label})
}

// addBars draws one bar per interval ending at each point (the value is the interval's count).
func (c *chart) addBars(label string, a axis, pts []xy, prev []time.Time) {
	for i, p := range pts {
		if p.V <= 0 {
			continue
		}
		x0, x1 := a.x(prev[i]), a.x(p.T)
		c.Bars = append(c.Bars, bar{X: x0, Y: c.y(p.V), W: math.Max(1, x1-x0), H: c.y(0) - c.y(p.V),
			Title: fmt.Sprintf("%s: %s at %s", label, fmtNumber(p.V), fmtSeconds(p.T.Sub(a.start).Seconds()))})
	}
	c.Legend = append(c.Legend, legend{Class: "bar", Label: label})
}

// niceStep rounds a raw step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) || math.IsInf(raw, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func fmtSeconds(s float64) string {
	if s < 60 && math.Abs(s-math.Round(s)) > 0.05 {
		return fmt.Sprintf("%.1fs", s)
	}
	d := time.Duration(s * float64(time.Second)).Round(time.Second)
	if d < time.Minute {
		return fmt.Sprintf("%ds", int(d.Seconds()))
	}
	return d.String()
}

func fmtNumber(v float64) string {
	if v == math.Trunc(v) {
		return thousands(int64(v))
	}
	return fmt.Sprintf("%.1f", v)
}

// thousands formats n with thousands separators.
func thousands(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

var funcs = template.FuncMap{
	"thousands": func(n any) string {
		switch v := n.(type) {
		case int:
			return thousands(int64(v))
		case int64:
			return thousands(v)
		}
		return fmt.Sprint(n)
	},
	"f1":  func(v float64) string { return fmt.Sprintf("%.1f", v) },
	"f0":  func(v float64) string { return fmt.Sprintf("%.0f", v) },
	"pct": func(a, b int) string { return fmt.Sprintf("%.1f%%", 100*float64(a)/math.Max(1, float64(b))) },
	"ms": func(ms int64) string {
		return (time.Duration(ms) * time.Millisecond).Round(100 * time.Millisecond).String()
	},
	"utc": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
}
