package bench

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Targets of the fan-out and idle benches, from ferry's requirements. The
// text reports print them and the charts draw them as dashed lines.
const (
	// FanoutP99TargetMS bounds the p99 delivery latency, in milliseconds.
	FanoutP99TargetMS = 20
	// FanoutCPUTargetUS bounds the server's CPU time per delivery, in
	// microseconds.
	FanoutCPUTargetUS = 1.5
	// FanoutRateTarget is the delivery rate, per second, at which both
	// bounds must hold.
	FanoutRateTarget = 200_000
	// IdleTargetKiB bounds the server's memory per idle connection, in KiB.
	IdleTargetKiB = 8
)

// Names of the files WriteCharts writes.
const (
	FanoutChartFile = "fanout.svg"
	UploadChartFile = "upload.svg"
	IdleChartFile   = "idle.svg"
)

// WriteCharts writes a chart of each kind of result given into dir:
// FanoutChartFile when fanout has runs, IdleChartFile when idle has,
// UploadChartFile when upload is not nil. It returns the paths written. A
// chart is drawn in full before its file is touched, so a chart that cannot
// be drawn leaves the previous file as it was.
func WriteCharts(dir string, fanout []FanoutResult, idle []IdleResult, upload *SendResult) ([]string, error) {
	type chart struct {
		file  string
		write func(io.Writer) error
	}
	var charts []chart
	if len(fanout) > 0 {
		charts = append(charts, chart{FanoutChartFile, func(w io.Writer) error { return WriteFanoutChart(w, fanout) }})
	}
	if upload != nil {
		charts = append(charts, chart{UploadChartFile, func(w io.Writer) error { return WriteUploadChart(w, *upload) }})
	}
	if len(idle) > 0 {
		charts = append(charts, chart{IdleChartFile, func(w io.Writer) error { return WriteIdleChart(w, idle) }})
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var (
		written []string
		errs    []error
	)
	for _, c := range charts {
		var buf bytes.Buffer
		if err := c.write(&buf); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.file, err))
			continue
		}
		path := filepath.Join(dir, c.file)
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			errs = append(errs, err)
			continue
		}
		written = append(written, path)
	}
	return written, errors.Join(errs...)
}

// Series colours: one hue per figure, grey for references and targets.
var (
	colorP50    = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	colorP99    = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	colorCPU    = color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}
	colorTarget = color.RGBA{R: 0x55, G: 0x55, B: 0x55, A: 0xff}
	colorDirect = color.RGBA{R: 0xaa, G: 0xaa, B: 0xaa, A: 0xff}
)

// WriteFanoutChart draws fan-out runs at several rates as an SVG: the
// p50 and p99 delivery latency above, the server's CPU time per delivery
// below, both against the delivery rate asked (Rate × Members), with the
// targets as dashed lines.
func WriteFanoutChart(w io.Writer, runs []FanoutResult) error {
	if len(runs) == 0 {
		return errors.New("no fan-out runs to chart")
	}
	runs = slices.Clone(runs)
	offered := func(r FanoutResult) float64 { return float64(r.Rate) * float64(r.Members) }
	slices.SortFunc(runs, func(a, b FanoutResult) int { return cmp.Compare(offered(a), offered(b)) })
	xs := make([]float64, len(runs))
	for i, r := range runs {
		xs[i] = offered(r)
	}
	pick := func(f func(FanoutResult) float64) plotter.XYs {
		xys := make(plotter.XYs, len(runs))
		for i, r := range runs {
			xys[i] = plotter.XY{X: xs[i], Y: f(r)}
		}
		return xys
	}

	lat := newPlot(fmt.Sprintf("Fan-out to %d members, %d-byte events", runs[0].Members, runs[0].Size),
		"", "delivery latency (ms)")
	cpu := newPlot("", "delivery rate asked (deliveries/s)", "server CPU per delivery (µs)")
	xMax := xs[len(xs)-1]
	if err := errors.Join(
		addSeries(lat, "p50", colorP50, pick(func(r FanoutResult) float64 { return r.LatencyP50MS })),
		addSeries(lat, "p99", colorP99, pick(func(r FanoutResult) float64 { return r.LatencyP99MS })),
		addTarget(lat, fmt.Sprintf("p99 target (< %d ms)", FanoutP99TargetMS), FanoutP99TargetMS, xMax),
		addSeries(cpu, "server CPU per delivery", colorCPU, pick(func(r FanoutResult) float64 { return r.CPUPerDeliveryUS })),
		addTarget(cpu, fmt.Sprintf("target (≤ %g µs at %s/s)", FanoutCPUTargetUS, kilo(FanoutRateTarget)), FanoutCPUTargetUS, xMax),
	); err != nil {
		return err
	}
	for _, p := range []*plot.Plot{lat, cpu} {
		p.X.Min = 0
		p.X.Tick.Marker = ticksAt(xs, kilo)
		p.Y.Max *= 1.3 // room for the legend
	}
	return writeSVG(w, 16*vg.Centimeter, 16*vg.Centimeter, lat, cpu)
}

// WriteUploadChart draws an upload bench's throughputs as an SVG: a bar
// per way of storing the file (minio-go's PutObject, ferry send, ferry
// send --base64) at the median of the rounds, a whisker from the slowest
// round to the fastest, and ferry's share of the direct throughput.
func WriteUploadChart(w io.Writer, r SendResult) error {
	if len(r.Rounds) == 0 {
		return errors.New("no upload rounds to chart")
	}
	spreads := []Spread{r.Direct, r.Binary, r.Base64}
	labels := []string{
		fmt.Sprintf("%.0f MB/s", r.Direct.Median),
		fmt.Sprintf("%.0f MB/s\n%.2f of direct\n(target ≥ %.2f)", r.Binary.Median, r.BinaryRatio.Median, BinaryTarget),
		fmt.Sprintf("%.0f MB/s\n%.2f of direct\n(target ≥ %.2f)", r.Base64.Median, r.Base64Ratio.Median, Base64Target),
	}
	p := newPlot(fmt.Sprintf("Upload of %s into MinIO: median of %d rounds, whiskers min to max", sizeString(r.Size), len(r.Rounds)),
		"", "throughput (MB/s)")
	p.NominalX("minio-go PutObject (direct)", "ferry send", "ferry send --base64")
	for i, s := range spreads {
		bar, err := plotter.NewBarChart(plotter.Values{s.Median}, 2*vg.Centimeter)
		if err != nil {
			return err
		}
		bar.XMin = float64(i)
		bar.LineStyle.Width = 0
		bar.Color = colorP50
		if i == 0 {
			bar.Color = colorDirect
		}
		p.Add(bar)
	}
	bars, err := plotter.NewYErrorBars(spreadBars(spreads))
	if err != nil {
		return err
	}
	top := make(plotter.XYs, len(spreads))
	for i, s := range spreads {
		top[i] = plotter.XY{X: float64(i), Y: s.Max}
	}
	values, err := newLabels(top, labels)
	if err != nil {
		return err
	}
	p.Add(bars, values)
	p.Y.Max *= 1.3 // room for the labels
	return writeSVG(w, 16*vg.Centimeter, 10*vg.Centimeter, p)
}

// spreadBars draws each Spread as an error bar from its Min to its Max
// around its Median, at x = its index.
type spreadBars []Spread

func (s spreadBars) Len() int                    { return len(s) }
func (s spreadBars) XY(i int) (float64, float64) { return float64(i), s[i].Median }
func (s spreadBars) YError(i int) (float64, float64) {
	return s[i].Median - s[i].Min, s[i].Max - s[i].Median
}

// WriteIdleChart draws idle runs with several connection counts as an SVG:
// the server's memory per connection against the count, with the target as
// a dashed line.
func WriteIdleChart(w io.Writer, runs []IdleResult) error {
	if len(runs) == 0 {
		return errors.New("no idle runs to chart")
	}
	runs = slices.Clone(runs)
	slices.SortFunc(runs, func(a, b IdleResult) int { return cmp.Compare(a.Conns, b.Conns) })
	xs := make([]float64, len(runs))
	xys := make(plotter.XYs, len(runs))
	labels := make([]string, len(runs))
	for i, r := range runs {
		xs[i] = float64(r.Conns)
		xys[i] = plotter.XY{X: xs[i], Y: r.RSSPerConn / 1024}
		labels[i] = fmt.Sprintf("%.2f KiB", xys[i].Y)
	}
	p := newPlot("Server memory per idle connection (RSS growth / connections)",
		"idle connections, each pinged", "memory per connection (KiB)")
	if err := errors.Join(
		addSeries(p, "ferry serve", colorP50, xys),
		addTarget(p, fmt.Sprintf("target (≤ %d KiB)", IdleTargetKiB), IdleTargetKiB, xs[len(xs)-1]),
	); err != nil {
		return err
	}
	values, err := newLabels(xys, labels)
	if err != nil {
		return err
	}
	p.Add(values)
	p.X.Min = 0
	p.X.Tick.Marker = ticksAt(xs, kilo)
	p.Y.Max *= 1.3
	return writeSVG(w, 16*vg.Centimeter, 10*vg.Centimeter, p)
}

// newPlot returns a plot with sans-serif text, a horizontal grid and a y
// axis from zero: every figure charted is a cost, and a cost read off an
// axis that does not start at zero looks larger than it is.
func newPlot(title, xLabel, yLabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = title, xLabel, yLabel
	for _, s := range []*text.Style{&p.Title.TextStyle, &p.X.Label.TextStyle, &p.Y.Label.TextStyle,
		&p.X.Tick.Label, &p.Y.Tick.Label, &p.Legend.TextStyle} {
		s.Font.Variant = "Sans"
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.XOffs = vg.Millimeter
	grid := plotter.NewGrid()
	grid.Vertical.Color = nil
	p.Add(grid)
	p.Y.Min = 0
	p.Y.Tick.Marker = roundTicks{}
	return p
}

// roundTicks labels about five round values (1, 2 or 5 times a power of
// ten apart) and writes them with no more decimals than the step has: the
// default ticker labels only two or three, and 25 as "25.00".
type roundTicks struct{}

func (roundTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(hi > lo) {
		return nil
	}
	raw := (hi - lo) / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := 10 * mag
	for _, m := range []float64{1, 2, 5} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	decimals := max(0, -int(math.Floor(math.Log10(step))))
	var ticks []plot.Tick
	for v := math.Ceil(lo/step) * step; v <= hi+step/1e6; v += step {
		ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', decimals, 64)})
	}
	return ticks
}

// addSeries adds a line through xys with a dot at each point.
func addSeries(p *plot.Plot, label string, c color.Color, xys plotter.XYs) error {
	line, dots, err := plotter.NewLinePoints(xys)
	if err != nil {
		return fmt.Errorf("%s: %w", label, err)
	}
	line.Color, line.Width = c, vg.Points(1.5)
	dots.Color, dots.Shape = c, draw.CircleGlyph{}
	p.Add(line, dots)
	p.Legend.Add(label, line, dots)
	return nil
}

// addTarget adds a dashed horizontal line at y from x = 0 to xMax.
func addTarget(p *plot.Plot, label string, y, xMax float64) error {
	line, err := plotter.NewLine(plotter.XYs{{X: 0, Y: y}, {X: xMax, Y: y}})
	if err != nil {
		return err
	}
	line.Color, line.Dashes = colorTarget, []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(line)
	p.Legend.Add(label, line)
	return nil
}

// newLabels returns labels centred just above the points xys.
func newLabels(xys plotter.XYs, labels []string) (*plotter.Labels, error) {
	l, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
	if err != nil {
		return nil, err
	}
	for i := range l.TextStyle {
		l.TextStyle[i].Font.Variant = "Sans"
		l.TextStyle[i].XAlign = text.XCenter
	}
	l.Offset = vg.Point{Y: vg.Points(6)}
	return l, nil
}

// ticksAt puts the x axis's ticks at the values measured, and nowhere else.
func ticksAt(xs []float64, format func(float64) string) plot.ConstantTicks {
	ticks := make(plot.ConstantTicks, len(xs))
	for i, x := range xs {
		ticks[i] = plot.Tick{Value: x, Label: format(x)}
	}
	return ticks
}

// kilo writes 25000 as "25k" and 1500 as "1.5k".
func kilo(v float64) string {
	if v < 1000 {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v/1000, 'f', -1, 64) + "k"
}

// sizeString writes a size in MiB or GiB.
func sizeString(n int64) string {
	if n >= 1<<30 && n%(1<<30) == 0 {
		return fmt.Sprintf("%d GiB", n>>30)
	}
	return fmt.Sprintf("%d MiB", n>>20)
}

// writeSVG draws plots stacked one above the other, with aligned axes, on
// a white page of width × height and writes it to w as SVG.
func writeSVG(w io.Writer, width, height vg.Length, plots ...*plot.Plot) error {
	c := vgsvg.New(width, height)
	dc := draw.New(c)
	// Opaque, so that the chart reads the same on a dark page.
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	rows := make([][]*plot.Plot, len(plots))
	for i, p := range plots {
		rows[i] = []*plot.Plot{p}
	}
	pad := 2 * vg.Millimeter
	tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadY: 3 * pad, PadTop: pad, PadBottom: pad, PadLeft: pad, PadRight: pad}
	canvases := plot.Align(rows, tiles, dc)
	for i, p := range plots {
		p.Draw(canvases[i][0])
	}
	_, err := c.WriteTo(w)
	return err
}
