package main

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

type box struct{ W, H float64 }

// browserPage is what a loaded report shows through the DevTools protocol.
type browserPage struct {
	Boxes   map[string]box    // by element id: the rendered size
	Lines   map[string]int    // by chart id: polylines drawn
	LineBox map[string]box    // by chart id: the first polyline's bounding box
	Values  map[string]string // by element id: data-value of every element that has one
}

// chromium finds a Chromium or Chrome binary. Without one the browser test skips with a clear
// message, except under CI, where it fails (.ci/run installs Debian's chromium).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no chromium on PATH: the HTML report's browser test needs headless Chromium (apt-get install chromium)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// loadInBrowser opens a file in headless Chromium and reads element boxes and values.
func loadInBrowser(t *testing.T, ctx context.Context, path string) browserPage {
	t.Helper()
	exe := chromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1200, 2000),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	bctx, cancelTimeout := context.WithTimeout(bctx, 90*time.Second)
	defer cancelTimeout()
	const read = `(() => {
		const r = {Boxes: {}, Lines: {}, LineBox: {}, Values: {}};
		for (const el of document.querySelectorAll('[id]')) {
			const b = el.getBoundingClientRect();
			r.Boxes[el.id] = {W: b.width, H: b.height};
		}
		for (const svg of document.querySelectorAll('svg.chart')) {
			const lines = svg.querySelectorAll('polyline');
			r.Lines[svg.id] = lines.length;
			if (lines.length) { const b = lines[0].getBoundingClientRect(); r.LineBox[svg.id] = {W: b.width, H: b.height}; }
		}
		for (const el of document.querySelectorAll('[data-value]')) r.Values[el.id] = el.dataset.value;
		return r;
	})()`
	if err := chromedp.Do(bctx, chromedp.Navigate("file://"+path), chromedp.WaitReady("body")); err != nil {
		t.Fatalf("browser: load %s: %v", path, err)
	}
	page, err := chromedp.Run(bctx, chromedp.Evaluate[browserPage](read))
	if err != nil {
		t.Fatalf("browser: read the page: %v", err)
	}
	return page
}
