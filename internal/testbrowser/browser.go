// Package testbrowser opens relayd's pages in a real headless Chromium
// (Debian's chromium package) for tests: the page is loaded, then the test
// counts elements and reads values with JavaScript, and every console
// error, uncaught exception, failed load and request the page made is
// collected, so a test can assert that a page loads cleanly and fetches
// nothing from outside.
//
// chromedp drives the browser over the DevTools protocol; it is the
// well-kept Go client for it, so no WebDriver server is needed. Without
// Chromium the test is skipped — unless RELAYD_REQUIRE_BROWSER is set (CI
// sets it after installing chromium), when it fails instead: a browser test
// that silently never runs cannot fail.
package testbrowser

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Page is one tab with a page loaded.
type Page struct {
	ctx      context.Context
	mu       sync.Mutex // guards problems and requests
	problems []string
	requests []string
}

// chromium finds the browser, or skips (or fails) the test.
func chromium(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv("RELAYD_REQUIRE_BROWSER") != "" {
		t.Fatal("chromium is not installed and RELAYD_REQUIRE_BROWSER is set")
	}
	t.Skip("chromium is not installed (apt-get install chromium)")
	return ""
}

// Open starts a headless Chromium, loads url in it and waits until the
// document is loaded. The browser is closed at the test's cleanup.
func Open(t testing.TB, url string) *Page {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, chromedp.Headless,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelA() })
	p := &Page{ctx: ctx}
	// The first Run starts the browser: no timeout on its context (it
	// would end the browser with it); a watchdog bounds it instead.
	start := make(chan error, 1)
	go func() { start <- chromedp.Do(ctx) }()
	select {
	case err := <-start:
		if err != nil {
			t.Fatalf("starting chromium: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("chromium did not start within 60s")
	}
	if err := chromedp.Listen(ctx, p.event); err != nil {
		t.Fatal(err)
	}
	p.Navigate(t, url)
	return p
}

func (p *Page) event(ev any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch e := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeWarning || e.Type == runtime.ConsoleAPICalledTypeAssert {
			msg := string(e.Type) + ":"
			for _, a := range e.Args {
				msg += " " + string(a.Value) + a.Description
			}
			p.problems = append(p.problems, msg)
		}
	case *runtime.EventExceptionThrown:
		d := e.ExceptionDetails
		msg := "exception: " + d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
		p.problems = append(p.problems, msg)
	case *log.EventEntryAdded:
		if e.Entry.Level == log.EntryLevelError {
			p.problems = append(p.problems, fmt.Sprintf("log %s: %s %s", e.Entry.Source, e.Entry.Text, e.Entry.URL))
		}
	case *network.EventLoadingFailed:
		p.problems = append(p.problems, fmt.Sprintf("load failed: %s %s", e.ErrorText, e.BlockedReason))
	case *network.EventRequestWillBeSent:
		p.requests = append(p.requests, e.Request.URL)
	}
}

// Navigate loads url in the tab and waits for the document.
func (p *Page) Navigate(t testing.TB, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitReady("body")); err != nil {
		t.Fatalf("loading %s: %v", url, err)
	}
}

// Eval runs a JavaScript expression in the page and decodes its value.
func Eval[T any](t testing.TB, p *Page, js string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluating %s: %v", js, err)
	}
	return v
}

// Count is the number of elements matching a CSS selector.
func (p *Page) Count(t testing.TB, selector string) int {
	t.Helper()
	return Eval[int](t, p, fmt.Sprintf("document.querySelectorAll(%q).length", selector))
}

// WaitFor polls a JavaScript condition until it is true or within passes.
func (p *Page) WaitFor(t testing.TB, within time.Duration, what, js string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !Eval[bool](t, p, js) {
		if time.Now().After(deadline) {
			t.Fatalf("page: %s: not within %v", what, within)
		}
		time.Sleep(50 * time.Millisecond) // a poll interval, bounded by the deadline above
	}
}

// Problems are the console errors and warnings, exceptions and failed
// loads seen so far.
func (p *Page) Problems() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.problems...)
}

// Requests are the URLs the page requested, itself included.
func (p *Page) Requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.requests...)
}
