package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// TestBrowserLinkFlow drives Debian's Chromium, headless, through the app:
// the React app with the real react-plaid-link, behind Safeclose, with
// Plaid Link answered by the emulator. react-plaid-link loads Plaid's CDN
// URL; the test fulfils that request with the emulator's drop-in
// (DevTools Fetch interception) and fails any other https request, so
// nothing leaves the machine. Screenshots of each step are saved as
// artifacts.
func TestBrowserLinkFlow(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium and the whole stack")
	}
	chromium := chromiumPath(t)
	dist := bundle(t)
	st := startStack(t, dist, false)
	dir := artifactDir(t)
	t.Logf("screenshots in %s", dir)

	ctx, cdnHits := newBrowser(t, chromium, st.linkScript(t))
	b := &page{t: t, ctx: ctx, dir: dir}
	defer func() {
		if t.Failed() {
			b.shot("failure")
			t.Logf("safeclose log (tail):\n%s", st.log())
		}
	}()

	// A user without a session gets the sign-in page, and no data.
	b.do(chromedp.Navigate(st.base + "/"))
	b.visible(`[data-testid=signin]`)
	b.shot("01-signin")
	if got := b.fetchStatus("/api/plaid/status"); got != http.StatusUnauthorized {
		t.Errorf("signed out: GET /api/plaid/status in the page = %d, want 401", got)
	}
	for _, p := range []string{"/api/plaid/status", "/api/me"} {
		if code, body := st.get(t, p); code != http.StatusUnauthorized || strings.Contains(body, "item_id") {
			t.Errorf("no session: GET %s = %d %s, want 401 and no data", p, code, body)
		}
	}

	// Sign in: the app mints the session cookie the auth plugin verifies.
	b.do(chromedp.SetValue(chromedp.CSS(`[data-testid=signin-user]`), "alice"),
		chromedp.Click(chromedp.CSS(`[data-testid=signin-submit]`)))
	b.visible(`[data-testid=connect]`)
	b.shot("02-signed-in")

	// Connect a bank through the Link stand-in, as a user would.
	b.do(chromedp.Click(chromedp.CSS(`[data-testid=connect]`)))
	b.link("03-link", false, "pass_good")
	b.visible(`[data-testid=item][data-state="ok"]`)
	b.shot("04-item-ok")
	if n := cdnHits.Load(); n == 0 {
		t.Error("react-plaid-link never requested Plaid's CDN script")
	}
	events := b.text(`[data-testid=events]`)
	for _, ev := range []string{"OPEN", "SELECT_INSTITUTION", "SUBMIT_CREDENTIALS", "HANDOFF"} {
		if !strings.Contains(events, ev) {
			t.Errorf("onEvent names %q lack %s", events, ev)
		}
	}
	itemID := b.attr(`[data-testid=item]`, "data-item-id")

	// The bank asks alice to log in again: the webhook turns the item into
	// login_required, and the app offers "Reconnect".
	st.resetLogin(t, itemID)
	b.visible(`[data-testid=item][data-state="login_required"]`)
	b.shot("05-login-required")

	// Reconnect runs Link in update mode (no institution step) and repairs it.
	b.do(chromedp.Click(chromedp.CSS(`[data-testid=reconnect]`)))
	b.link("06-update", true, "pass_good")
	b.visible(`[data-testid=item][data-state="ok"]`)
	b.shot("07-reconnected")
	if n := b.count(`[data-testid=item]`); n != 1 {
		t.Errorf("items after update mode = %d, want 1 (update mode keeps the item)", n)
	}

	// Plaid's sandbox error credentials: Link shows the error, and the app
	// shows onExit's error.
	b.do(chromedp.Click(chromedp.CSS(`[data-testid=connect]`)))
	b.link("08-error", false, "error_ITEM_LOCKED")
	b.visible(`[data-testid=exit-error][data-code="ITEM_LOCKED"]`)
	b.shot("09-exit-error")

	// Signing out leaves no way to the data.
	b.do(chromedp.Click(chromedp.CSS(`[data-testid=signout]`)))
	b.visible(`[data-testid=signin]`)
	b.do(chromedp.Reload())
	b.visible(`[data-testid=signin]`)
	if got := b.fetchStatus("/api/plaid/status"); got != http.StatusUnauthorized {
		t.Errorf("signed out again: GET /api/plaid/status = %d, want 401", got)
	}
	b.shot("10-signed-out")
}

// newBrowser starts Chromium with a fresh profile and answers Plaid's CDN
// URL with the emulator's script; it counts those answers.
func newBrowser(t *testing.T, chromium string, linkJS []byte) (context.Context, *atomic.Int64) {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1000, 760),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // start the browser without a deadline
		t.Fatalf("start chromium: %v", err)
	}
	var hits atomic.Int64
	paused := chromedp.Events(ctx, fetch.RequestPaused)
	go func() {
		for ev, err := range paused {
			if err != nil {
				return
			}
			if ev.Request.URL == plaidLinkCDN {
				hits.Add(1)
				_, _ = chromedp.Call(ctx, fetch.FulfillRequest, fetch.FulfillRequestParams{
					RequestID: ev.RequestID, ResponseCode: 200, Body: linkJS,
					ResponseHeaders: []*fetch.HeaderEntry{{Name: "Content-Type", Value: "text/javascript; charset=utf-8"}},
				})
				continue
			}
			_, _ = chromedp.Call(ctx, fetch.FailRequest, fetch.FailRequestParams{RequestID: ev.RequestID, ErrorReason: network.ErrorReasonBlockedByClient})
		}
	}()
	if _, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{URLPattern: "https://*"}}}); err != nil {
		t.Fatalf("Fetch.enable: %v", err)
	}
	return ctx, &hits
}

// page runs bounded browser steps for a test.
type page struct {
	t   *testing.T
	ctx context.Context
	dir string
}

// stepTimeout bounds every step; the machine may be busy, so it is generous.
const stepTimeout = 60 * time.Second

func (p *page) do(steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.t.Fatalf("browser step: %v", err)
	}
}

func (p *page) visible(sel string, opts ...chromedp.QueryOption) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(sel), opts...)); err != nil {
		p.t.Fatalf("waiting for %s: %v", sel, err)
	}
}

func runIn[T any](p *page, a chromedp.Action[T]) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		p.t.Fatalf("browser step: %v", err)
	}
	return v
}

func (p *page) text(sel string) string {
	p.t.Helper()
	return runIn(p, chromedp.Text(chromedp.CSS(sel)))
}

func (p *page) attr(sel, name string) string {
	p.t.Helper()
	r := runIn(p, chromedp.AttributeValue(chromedp.CSS(sel), name))
	if !r.Exists || r.Value == "" {
		p.t.Fatalf("%s has no %s", sel, name)
	}
	return r.Value
}

func (p *page) count(sel string) int {
	p.t.Helper()
	return runIn(p, chromedp.Evaluate[int](`document.querySelectorAll(`+quoteJS(sel)+`).length`))
}

// fetchStatus is the status of a same-origin GET made by the page itself,
// with whatever cookies the browser holds.
func (p *page) fetchStatus(path string) int {
	p.t.Helper()
	return runIn(p, chromedp.Evaluate[int](`fetch(`+quoteJS(path)+`, {credentials: 'same-origin'}).then(r => r.status)`, chromedp.EvalAwaitPromise))
}

func quoteJS(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// shot saves a screenshot of the viewport as NAME.png.
func (p *page) shot(name string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	b, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(p.dir, name+".png"), b, 0o644); err != nil {
		p.t.Errorf("screenshot %s: %v", name, err)
	}
}

// link goes through the Link stand-in in its iframe: consent, institution
// (not in update mode), credentials, then accounts and success — or, with an
// error_<CODE> password, the error pane and Exit.
func (p *page) link(prefix string, update bool, password string) {
	p.t.Helper()
	const frameSel = `iframe[title="Plaid Link"]`
	p.visible(frameSel)
	frame := runIn(p, chromedp.Nodes(chromedp.CSS(frameSel), chromedp.NodeVisible))[0]
	in := chromedp.FromNode(frame)
	p.visible(`[data-testid=link-continue]`, in)
	p.shot(prefix + "-consent")
	p.do(chromedp.Click(chromedp.CSS(`[data-testid=link-continue]`), in))
	if !update {
		p.visible(`[data-testid=link-search]`, in)
		p.do(chromedp.SendKeys(chromedp.CSS(`[data-testid=link-search]`), "Platypus", in))
		p.visible(`[data-institution-id="ins_109508"]`, in)
		p.shot(prefix + "-institution")
		p.do(chromedp.Click(chromedp.CSS(`[data-institution-id="ins_109508"]`), in))
	}
	p.visible(`[data-testid=link-username]`, in)
	p.do(chromedp.SendKeys(chromedp.CSS(`[data-testid=link-username]`), "user_good", in),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=link-password]`), password, in))
	p.shot(prefix + "-credentials")
	p.do(chromedp.Click(chromedp.CSS(`[data-testid=link-continue]`), in))
	if strings.HasPrefix(password, "error_") {
		p.visible(`[data-testid=link-error][data-error-code="`+strings.TrimPrefix(password, "error_")+`"]`, in)
		p.shot(prefix + "-link-error")
		p.do(chromedp.Click(chromedp.CSS(`[data-testid=link-exit]`), in))
		p.do(chromedp.WaitNotPresent(chromedp.CSS(frameSel)))
		return
	}
	p.visible(`[data-testid=link-accounts]`, in)
	p.shot(prefix + "-accounts")
	p.do(chromedp.Click(chromedp.CSS(`[data-testid=link-continue]`), in))
	p.visible(`.check`, in)
	p.shot(prefix + "-success")
	p.do(chromedp.Click(chromedp.CSS(`[data-testid=link-continue]`), in))
}

// TestBrowserDemoLinkScript checks `make demo`'s dev-only substitution: the
// page loads the emulator's script and marks Plaid's CDN script as present,
// so react-plaid-link opens Link without ever requesting cdn.plaid.com.
func TestBrowserDemoLinkScript(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium and the whole stack")
	}
	chromium := chromiumPath(t)
	dist := bundle(t)
	st := startStack(t, dist, true)
	ctx, cdnHits := newBrowser(t, chromium, nil)
	b := &page{t: t, ctx: ctx, dir: artifactDir(t)}
	defer func() {
		if t.Failed() {
			b.shot("failure")
		}
	}()
	b.do(chromedp.Navigate(st.base + "/"))
	b.visible(`[data-testid=signin]`)
	b.do(chromedp.Click(chromedp.CSS(`[data-testid=signin-submit]`)))
	b.do(chromedp.Click(chromedp.CSS(`[data-testid=connect]`)))
	const frameSel = `iframe[title="Plaid Link"]`
	b.visible(frameSel)
	frame := runIn(b, chromedp.Nodes(chromedp.CSS(frameSel), chromedp.NodeVisible))[0]
	b.visible(`[data-testid=link-continue]`, chromedp.FromNode(frame))
	b.shot("demo-link-open")
	// Closing Link is an exit without an error.
	b.do(chromedp.Click(chromedp.CSS(`[data-testid=link-close]`), chromedp.FromNode(frame)))
	b.do(chromedp.WaitNotPresent(chromedp.CSS(frameSel)))
	if n := b.count(`[data-testid=exit-error]`); n != 0 {
		t.Errorf("exit without an error shows %d exit errors", n)
	}
	if n := cdnHits.Load(); n != 0 {
		t.Errorf("the demo page requested Plaid's CDN script %d times, want 0", n)
	}
}

// TestBrowserCrossSiteSignin is login CSRF in a real browser: a page on
// another site (localhost, while the app is 127.0.0.1) auto-submits a form
// with enctype text/plain whose body is JSON-shaped, {"user":"mallory",
// "x":"="}, to the app's /signin. The answer is a top-level navigation, so
// Chromium keeps a SameSite=Lax cookie it sets; the app must refuse the
// post, so the browser holds no session afterwards.
func TestBrowserCrossSiteSignin(t *testing.T) {
	chromium := chromiumPath(t)
	var session atomic.Value // the session cookie the browser sent to /probe
	session.Store("")
	app := newTestHandler(t, Options{})
	appURL := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/probe" {
			if c, err := r.Cookie(cookieName); err == nil {
				session.Store(c.Value)
			}
			_, _ = w.Write([]byte("probe"))
			return
		}
		app.ServeHTTP(w, r)
	}))
	evil := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!doctype html><form method="POST" enctype="text/plain" action="` + appURL + `/signin">` +
			`<input name='{"user":"mallory","x":"' value='"}'></form><script>document.forms[0].submit()</script>`))
	}))
	evil = strings.Replace(evil, "127.0.0.1", "localhost", 1) // another site
	ctx, _ := newBrowser(t, chromium, nil)
	p := &page{t: t, ctx: ctx}
	p.do(chromedp.Navigate(evil))
	for i := 0; ; i++ { // bounded: wait for the form's navigation to land on the app
		if strings.HasPrefix(runIn(p, chromedp.Evaluate[string](`location.href`)), appURL) {
			break
		}
		if i == 100 {
			t.Fatal("the cross-site form never navigated to the app")
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.do(chromedp.Navigate(appURL + "/probe"))
	if s := session.Load().(string); s != "" {
		t.Errorf("after another site's form posted to /signin, the browser holds a session cookie %q (login CSRF)", s)
	}
}
