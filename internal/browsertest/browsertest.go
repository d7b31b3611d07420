// Package browsertest runs a real headless Chromium (Debian's chromium
// package) for tests, driven with chromedp. A missing chromium fails the
// test; it never skips.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Browser is one Chromium process with a fresh profile.
type Browser struct {
	ctx context.Context // the browser's first tab; new tabs derive from it
}

// ExecPath finds the Chromium binary: $CHROMIUM if set, else chromium or
// chromium-browser on PATH.
func ExecPath() (string, error) {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("chromium is not installed (apt-get install -y chromium)")
}

// Start launches Chromium headless with a fresh --user-data-dir; it is
// stopped when the test ends.
func Start(t testing.TB) *Browser {
	t.Helper()
	path, err := ExecPath()
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir: its cleanup removes the directory once, and Chromium's
	// helper processes can outlive the browser by a moment and still write
	// to the profile (seen in tests that last a second or two).
	profile, err := os.MkdirTemp("", "parley-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 800),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	if err := chromedp.Run(bctx); err != nil {
		bcancel()
		acancel()
		removeProfile(t, profile)
		t.Fatalf("browsertest: start %s: %v", path, err)
	}
	t.Cleanup(func() {
		bcancel()
		acancel()
		removeProfile(t, profile)
	})
	return &Browser{ctx: bctx}
}

// removeProfile removes a stopped browser's profile directory, trying again
// while the helper processes that outlived the browser still write to it.
func removeProfile(t testing.TB, dir string) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := os.RemoveAll(dir)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("browsertest: remove the browser profile: %v", err)
			return
		}
		time.Sleep(20 * time.Millisecond) // no event says the last helper has exited
	}
}

// Page is one tab. Uncaught JavaScript exceptions and console errors are
// collected; Check fails the test if there were any.
type Page struct {
	Ctx context.Context

	mu       sync.Mutex
	problems []string
	console  []string
}

// NewPage opens a new tab, closed when the test ends.
func (b *Browser) NewPage(t testing.TB) *Page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	t.Cleanup(cancel)
	p := &Page{Ctx: ctx}
	chromedp.ListenTarget(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			p.mu.Lock()
			p.problems = append(p.problems, "uncaught exception: "+ev.ExceptionDetails.Error())
			p.mu.Unlock()
		case *runtime.EventConsoleAPICalled:
			var parts []string
			for _, a := range ev.Args {
				parts = append(parts, strings.Trim(string(a.Value), `"`))
			}
			line := string(ev.Type) + ": " + strings.Join(parts, " ")
			p.mu.Lock()
			p.console = append(p.console, line)
			p.mu.Unlock()
		}
	})
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("browsertest: new tab: %v", err)
	}
	return p
}

// Run runs chromedp actions on the page with a timeout, failing the test
// on error.
func (p *Page) Run(t testing.TB, timeout time.Duration, actions ...chromedp.Action) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.Ctx, timeout)
	defer cancel()
	if err := chromedp.Run(ctx, actions...); err != nil {
		t.Fatalf("browser: %v\nconsole:\n%s", err, p.Console())
	}
}

// Console returns the console lines so far.
func (p *Page) Console() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.console, "\n")
}

// Problems returns the uncaught exceptions so far.
func (p *Page) Problems() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.problems...)
}
