// Package plots draws the benchmark suite's line charts as PNG files with
// gonum.org/v1/plot.
package plots

import (
	"fmt"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Line is one series. Color and Dash index plotutil's palettes; Points
// false draws no glyphs.
type Line struct {
	Name   string
	X, Y   []float64
	Color  int
	Dash   int
	Glyph  int
	Points bool
}

// Chart is one PNG.
type Chart struct {
	Title, XLabel, YLabel string
	LogX, LogY            bool
	// YMin fixes a linear Y axis' low end (NaN: automatic).
	YMin float64
	// Headroom multiplies the Y axis' top (a log axis: by Headroom
	// decades' worth, i.e. 10^Headroom), leaving room for the legend above
	// the data; 0: none.
	Headroom float64
	Lines    []Line
	// Width and Height in inches (default 8 x 5).
	Width, Height float64
}

// Save draws c into path (.png).
func (c Chart) Save(path string) error {
	p := plot.New()
	p.Title.Text = c.Title
	p.X.Label.Text = c.XLabel
	p.Y.Label.Text = c.YLabel
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	if c.LogX {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = logTicks{}
	} else {
		p.X.Tick.Marker = thousands{}
	}
	if c.LogY {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = logTicks{}
	} else {
		p.Y.Tick.Marker = thousands{}
	}
	n := 0
	for _, l := range c.Lines {
		var xys plotter.XYs
		for i := range l.X {
			if i >= len(l.Y) || math.IsNaN(l.Y[i]) || math.IsInf(l.Y[i], 0) {
				continue
			}
			if (c.LogX && l.X[i] <= 0) || (c.LogY && l.Y[i] <= 0) {
				continue
			}
			xys = append(xys, plotter.XY{X: l.X[i], Y: l.Y[i]})
		}
		if len(xys) == 0 {
			continue
		}
		n++
		ln, sc, err := plotter.NewLinePoints(xys)
		if err != nil {
			return fmt.Errorf("%s: %w", l.Name, err)
		}
		ln.Color = plotutil.Color(l.Color)
		ln.Width = vg.Points(1.5)
		ln.Dashes = plotutil.Dashes(l.Dash)
		if l.Points {
			sc.Color = plotutil.Color(l.Color)
			sc.Shape = plotutil.Shape(l.Glyph)
			sc.Radius = vg.Points(3)
			p.Add(ln, sc)
			p.Legend.Add(l.Name, ln, sc)
		} else {
			p.Add(ln)
			p.Legend.Add(l.Name, ln)
		}
	}
	if n == 0 {
		return fmt.Errorf("%s: nothing to plot", path)
	}
	if !c.LogY && !math.IsNaN(c.YMin) {
		p.Y.Min = c.YMin
	}
	if c.Headroom > 0 {
		if c.LogY {
			p.Y.Max *= math.Pow(10, c.Headroom)
		} else {
			p.Y.Max += (p.Y.Max - p.Y.Min) * c.Headroom
		}
	}
	w, h := c.Width, c.Height
	if w == 0 {
		w, h = 8, 5
	}
	return p.Save(vg.Length(w)*vg.Inch, vg.Length(h)*vg.Inch, path)
}

// thousands is the default ticker with 1,000s separators and k/M suffixes.
type thousands struct{}

func (thousands) Ticks(min, max float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(min, max)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = human(ts[i].Value)
		}
	}
	return ts
}

// logTicks is plot.LogTicks with the same labels as thousands, and the
// 2x and 5x minor ticks labelled when the axis spans few decades.
type logTicks struct{}

func (logTicks) Ticks(min, max float64) []plot.Tick {
	ts := plot.LogTicks{Prec: -1}.Ticks(min, max)
	few := max/min <= 1e3
	for i := range ts {
		v := ts[i].Value
		m := v / math.Pow(10, math.Floor(math.Log10(v)+1e-9))
		switch {
		case ts[i].Label != "":
			ts[i].Label = human(v)
		case few && (math.Abs(m-2) < 1e-6 || math.Abs(m-5) < 1e-6):
			ts[i].Label = human(v)
		}
	}
	return ts
}

func human(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e6:
		return trim(fmt.Sprintf("%.2f", v/1e6)) + "M"
	case a >= 1e3:
		return trim(fmt.Sprintf("%.1f", v/1e3)) + "k"
	default:
		return trim(fmt.Sprintf("%.2f", v))
	}
}

func trim(s string) string {
	for len(s) > 1 && s[len(s)-1] == '0' {
		s = s[:len(s)-1]
	}
	if s[len(s)-1] == '.' {
		s = s[:len(s)-1]
	}
	return s
}
