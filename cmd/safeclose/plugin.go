package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/safeclose/safeclose/hostabi"
)

// runPlugin: `plugin check FILE.wasm` and `plugin run FILE.wasm`, so a
// plugin author can test without a running proxy.
func runPlugin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	leaf, args, err := leafArgs("plugin", args, stdout, "check", "run")
	if err != nil {
		return err
	}
	if leaf == "check" {
		return pluginCheck(ctx, args, stdout, stderr)
	}
	return pluginRun(ctx, args, stdout, stderr)
}

// splitFileArg lets the file come before or after the flags.
func splitFileArg(args []string) (file string, rest []string) {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return args[0], args[1:]
	}
	return "", args
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

type pluginFlags struct {
	kind, caps, config, jwks, iss, aud string
	secrets                            multiFlag
	timeout                            time.Duration
	pages                              uint
	bodyLimit                          int
	cacheDir                           string
}

func (pf *pluginFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&pf.kind, "kind", "auth", "plugin kind: auth or event")
	fs.StringVar(&pf.caps, "cap", "config,log,clock,kv,crypto", "capabilities to grant, comma-separated (config,log,clock,kv,crypto,body)")
	fs.StringVar(&pf.config, "config", "", "plugin config: a JSON file")
	fs.StringVar(&pf.jwks, "jwks", "", "JWKS file for jwt_verify")
	fs.StringVar(&pf.iss, "jwt-issuer", "", "required JWT issuer")
	fs.StringVar(&pf.aud, "jwt-audience", "", "required JWT audience")
	fs.Var(&pf.secrets, "secret", "NAME=VALUE secret for jwt_verify/hmac (repeatable)")
	fs.DurationVar(&pf.timeout, "timeout", hostabi.DefaultTimeout, "per-call deadline")
	fs.UintVar(&pf.pages, "memory-pages", hostabi.DefaultMemoryPages, "memory cap in 64 KiB pages")
	fs.IntVar(&pf.bodyLimit, "body-limit", 0, "body bytes the plugin may read (with the body capability)")
	fs.StringVar(&pf.cacheDir, "cache", "", "directory for compiled modules (as serve's plugin_cache): repeated runs skip compiling")
}

func (pf *pluginFlags) options(file string, wasm []byte) (hostabi.PluginOptions, error) {
	// Checked before the uint32 conversion so a huge value cannot wrap around
	// into range (issue 9.17); the cap is hostabi's (issue 9.13).
	if pf.pages < 1 || pf.pages > hostabi.MaxMemoryPages {
		return hostabi.PluginOptions{}, fmt.Errorf("-memory-pages %d: must be in 1..%d (64 KiB pages)", pf.pages, hostabi.MaxMemoryPages)
	}
	if pf.timeout <= 0 {
		return hostabi.PluginOptions{}, fmt.Errorf("-timeout %s: must be positive", pf.timeout)
	}
	o := hostabi.PluginOptions{
		Tenant: "cli", Name: file, Wasm: wasm, Timeout: pf.timeout, MemoryLimitPages: uint32(pf.pages),
		PoolSize: 1, BodyLimit: pf.bodyLimit, Secrets: map[string][]byte{},
	}
	switch pf.kind {
	case "auth":
	case "event":
		o.Kind = hostabi.KindEvent
	default:
		return o, fmt.Errorf("-kind %q: want auth or event", pf.kind)
	}
	caps, err := hostabi.ParseCapabilities(strings.Split(pf.caps, ","))
	if err != nil {
		return o, fmt.Errorf("-cap: %w", err)
	}
	o.Caps = caps
	if pf.config != "" {
		b, err := os.ReadFile(pf.config)
		if err != nil {
			return o, err
		}
		if !json.Valid(b) {
			return o, fmt.Errorf("-config %s is not JSON", pf.config)
		}
		o.Config = b
	}
	if pf.jwks != "" {
		b, err := os.ReadFile(pf.jwks)
		if err != nil {
			return o, err
		}
		o.JWT.JWKS = b
	}
	o.JWT.Issuer, o.JWT.Audience = pf.iss, pf.aud
	for _, s := range pf.secrets {
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return o, fmt.Errorf("-secret %q: want NAME=VALUE", s)
		}
		o.Secrets[k] = []byte(v)
	}
	return o, nil
}

// parse reads the flags, the module file (named before or after the flags)
// and turns them into load options.
func (pf *pluginFlags) parse(fs *flag.FlagSet, file string, args []string, stdout io.Writer) (string, []byte, hostabi.PluginOptions, error) {
	if err := parseFlags(fs, args, stdout); err != nil {
		return "", nil, hostabi.PluginOptions{}, err
	}
	if file == "" && fs.NArg() > 0 {
		file = fs.Arg(0)
	}
	if file == "" {
		return "", nil, hostabi.PluginOptions{}, usageErrorf(fs.Name(), "%s: give the module file (FILE.wasm)", fs.Name())
	}
	wasm, err := os.ReadFile(file)
	if err != nil {
		return "", nil, hostabi.PluginOptions{}, err
	}
	o, err := pf.options(file, wasm)
	return file, wasm, o, err
}

func pluginCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	file, args := splitFileArg(args)
	var pf pluginFlags
	file, wasm, o, err := pf.parse(pluginCheckFlagSet(&pf), file, args, stdout)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(wasm)
	fmt.Fprintf(stdout, "file:      %s\nsize:      %d bytes\nsha256:    %x\nkind:      %s\n", file, len(wasm), sum, o.Kind)
	mi, compile, err := hostabi.InspectWasmCached(ctx, wasm, pf.cacheDir)
	if err != nil {
		fmt.Fprintf(stdout, "verdict:   REFUSED: %v\n", err)
		return err
	}
	sort.Strings(mi.Exports)
	fmt.Fprintf(stdout, "compile:   %s\nabi:       %s\nexports:   %s\nimports:   %s\nmemory:    min %d pages\n",
		compile.Round(time.Millisecond), orNone(mi.ABI), strings.Join(mi.Exports, " "), strings.Join(mi.Imports, " "), mi.MinPages)
	e, err := hostabi.NewEngine(ctx, hostabi.Options{CacheDir: pf.cacheDir, Logger: slog.New(slog.NewTextHandler(stderr, nil))})
	if err != nil {
		return err
	}
	defer e.Close(ctx)
	t0 := time.Now()
	p, err := e.Load(ctx, o)
	if err != nil {
		fmt.Fprintf(stdout, "verdict:   REFUSED: %v\n", err)
		return err
	}
	defer p.Close(ctx)
	fmt.Fprintf(stdout, "start:     %s (compile + one instance)\nverdict:   OK\n", time.Since(t0).Round(time.Millisecond))
	return nil
}

func pluginCheckFlagSet(pf *pluginFlags) *flag.FlagSet {
	fs := flag.NewFlagSet("plugin check", flag.ContinueOnError)
	pf.register(fs)
	return fs
}

type pluginRunOpts struct {
	request, source, body, event, user, state string
	headers                                   multiFlag
}

func pluginRunFlagSet(pf *pluginFlags, ro *pluginRunOpts) *flag.FlagSet {
	fs := flag.NewFlagSet("plugin run", flag.ContinueOnError)
	pf.register(fs)
	fs.StringVar(&ro.request, "request", "GET /", `the request line: "METHOD /path?query"`)
	fs.Var(&ro.headers, "H", `a request header "Name: value" (repeatable)`)
	fs.StringVar(&ro.source, "source", "127.0.0.1:40000", "client address ip:port")
	fs.StringVar(&ro.body, "body", "", "request body")
	fs.StringVar(&ro.event, "event", "", "event plugins: a webhook JSON file")
	fs.StringVar(&ro.user, "user", "alice", "event plugins: the item's user")
	fs.StringVar(&ro.state, "item-state", "ok", "event plugins: the item's state")
	return fs
}

func orNone(s string) string {
	if s == "" {
		return "(no host functions imported)"
	}
	return s
}

func pluginRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	file, args := splitFileArg(args)
	var pf pluginFlags
	var ro pluginRunOpts
	_, _, o, err := pf.parse(pluginRunFlagSet(&pf, &ro), file, args, stdout)
	request, headers, source, body, event, user, state := &ro.request, ro.headers, &ro.source, &ro.body, &ro.event, &ro.user, &ro.state
	if err != nil {
		return err
	}
	method, target, err := parseRequestLine(*request)
	if err != nil {
		return err
	}
	e, err := hostabi.NewEngine(ctx, hostabi.Options{CacheDir: pf.cacheDir, Logger: slog.New(slog.NewTextHandler(stderr, nil))})
	if err != nil {
		return err
	}
	defer e.Close(ctx)
	p, err := e.Load(ctx, o)
	if err != nil {
		return err
	}
	defer p.Close(ctx)
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	t0 := time.Now()
	if o.Kind == hostabi.KindEvent {
		if *event == "" {
			return errors.New("-event FILE is required for event plugins")
		}
		b, err := os.ReadFile(*event)
		if err != nil {
			return err
		}
		var ev struct {
			ItemID string `json:"item_id"`
		}
		_ = json.Unmarshal(b, &ev)
		res, err := p.HandleEvent(ctx, hostabi.Event{Tenant: "cli", User: *user, ItemID: ev.ItemID, ItemState: *state, Body: b})
		if err != nil {
			return err
		}
		action := map[hostabi.Action]string{hostabi.ActionKeep: "keep", hostabi.ActionDrop: "drop", hostabi.ActionForward: "forward"}[res.Action]
		out := map[string]any{"action": action, "forward": res.Forward, "took": time.Since(t0).String()}
		if res.Payload != nil {
			out["payload"] = json.RawMessage(res.Payload)
			if !json.Valid(res.Payload) {
				out["payload"] = string(res.Payload)
			}
		}
		return enc.Encode(out)
	}
	r := &cliRequest{method: method, uri: target, source: *source, body: *body}
	for _, h := range headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			return fmt.Errorf("-H %q: want \"Name: value\"", h)
		}
		r.headers = append(r.headers, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
	}
	d, err := p.Authenticate(ctx, r)
	if err != nil {
		fmt.Fprintf(stdout, "{\"decision\": \"error (the proxy fails closed: 503)\", \"error\": %q}\n", err.Error())
		return err
	}
	out := map[string]any{"took": time.Since(t0).String()}
	if d.Allow {
		out["decision"], out["subject"] = "allow", d.Subject
		claims := map[string]string{}
		for _, c := range d.Claims {
			claims[c.Name] = c.Value
		}
		out["claims"] = claims
	} else {
		out["decision"], out["status"] = "deny", d.Status
	}
	return enc.Encode(out)
}

// parseRequestLine reads -request, "METHOD /target": a token, one space,
// and an origin-form target without spaces or control characters. Anything
// else is an error rather than a silent "GET /" (issue 9.17).
func parseRequestLine(s string) (method, target string, err error) {
	bad := func(why string) (string, string, error) {
		return "", "", fmt.Errorf("-request %q: %s; want \"METHOD /path?query\"", s, why)
	}
	method, target, ok := strings.Cut(s, " ")
	if !ok {
		return bad("no request target")
	}
	if method == "" {
		return bad("no method")
	}
	for _, c := range []byte(method) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return bad("the method is not an HTTP token")
		}
	}
	if !strings.HasPrefix(target, "/") {
		return bad("the target must start with /")
	}
	for _, c := range []byte(target) {
		if c <= ' ' || c == 0x7f {
			return bad("the target holds a space or control character")
		}
	}
	return method, target, nil
}

type cliRequest struct {
	method, uri, source, body string
	headers                   [][2]string
}

func (r *cliRequest) Method() []byte     { return []byte(r.method) }
func (r *cliRequest) URI() []byte        { return []byte(r.uri) }
func (r *cliRequest) SourceAddr() []byte { return []byte(r.source) }
func (r *cliRequest) Body() []byte       { return []byte(r.body) }
func (r *cliRequest) VisitHeaders(fn func(name, value []byte)) {
	for _, h := range r.headers {
		fn([]byte(h[0]), []byte(h[1]))
	}
}
