package configs

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DefaultYAML is configs/safeclose.yaml, the working dev default that
// `safeclose serve` uses when no -config is given.
//
//go:embed safeclose.yaml
var DefaultYAML []byte

// File is the whole configuration. See safeclose.yaml for a commented example.
type File struct {
	Listen      string    `yaml:"listen"`       // public listener; default 127.0.0.1:8080
	AdminListen string    `yaml:"admin_listen"` // /healthz, /readyz, /metrics; default 127.0.0.1:9090
	DataDir     string    `yaml:"data_dir"`     // Badger directory; default ./data
	Keys        SecretRef `yaml:"keys"`         // token-sealing keyring: "id:base64,id:base64", first is primary
	LogLevel    string    `yaml:"log_level"`    // debug, info, warn, error; default info
	PluginCache string    `yaml:"plugin_cache"` // compiled Wasm cache dir; default <data_dir>/wasm-cache
	Store       Store     `yaml:"store"`        // backend: badger (default) or postgres; see store.go

	TLS            *TLS `yaml:"tls"`              // TLS on the public listener; nil: plain HTTP
	AccessLog      bool `yaml:"access_log"`       // one log line per request; default true
	TrustRequestID bool `yaml:"trust_request_id"` // keep a well-formed incoming X-Request-Id; default false
	AdminPprof     bool `yaml:"admin_pprof"`      // /debug/pprof/ on the admin listener; default false

	// ProxyProtocol: Safeclose behind a layer-4 load balancer; nil: none.
	ProxyProtocol *ProxyProtocol `yaml:"proxy_protocol"`

	Limits   Limits   `yaml:"limits"`
	Webhooks Webhooks `yaml:"webhooks"`
	Emulator Emulator `yaml:"emulator"`
	Tenants  []Tenant `yaml:"tenants"`
}

// Limits bound the public listener.
type Limits struct {
	MaxBodyBytes  int      `yaml:"max_body_bytes"` // default 64 KiB
	ReadTimeout   Duration `yaml:"read_timeout"`   // default 10s
	WriteTimeout  Duration `yaml:"write_timeout"`  // default 30s
	IdleTimeout   Duration `yaml:"idle_timeout"`   // default 60s
	UpstreamConns int      `yaml:"upstream_conns"` // per tenant upstream; default 512
	PlaidTimeout  Duration `yaml:"plaid_timeout"`  // per Plaid call; default 15s

	// Client connections open at once on the public listeners: over
	// MaxConns a connection is refused with 503, over MaxConnsPerIP (from
	// one address; 0 = no bound) with 429. Default 10000 and 0.
	MaxConns      int `yaml:"max_conns"`
	MaxConnsPerIP int `yaml:"max_conns_per_ip"`
	// MaxHeaderBytes bounds a request's line and headers (431 beyond);
	// default 16 KiB, held per open connection.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// PlaidCallsPerUser bounds the Plaid calls one user's requests make a
	// minute (per replica); default 60.
	PlaidCallsPerUser int `yaml:"plaid_calls_per_user"`

	// What passes through the reverse proxy (issue 13).
	MaxResponseBytes     int64    `yaml:"max_response_bytes"`     // per proxied response, streamed ones counted as they pass; default 64 MiB
	MaxWebSockets        int      `yaml:"max_websockets"`         // open WebSocket tunnels per tenant; default 1000
	WebSocketIdleTimeout Duration `yaml:"websocket_idle_timeout"` // a tunnel silent both ways is closed; default 60s
}

// ProxyProtocol names the load balancers whose connections begin with a
// PROXY protocol header (v1 or v2) carrying the client's address. Their
// connections must carry one; any other address is a direct client.
type ProxyProtocol struct {
	From []string `yaml:"from"` // addresses or CIDR ranges of the balancers
}

// Prefixes parses From; Validate has checked it.
func (p *ProxyProtocol) Prefixes() []netip.Prefix { return prefixes(p.From) }

// prefixes parses a list of addresses or CIDR ranges (proxy_protocol.from,
// webhooks.source_ips), skipping what parsePrefix refuses: Validate has
// named those.
func prefixes(list []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range list {
		if p, err := parsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// parsePrefix reads an address or a CIDR range: "10.0.0.0/8", or
// "52.21.26.131" as its /32 (an IPv6 address as its /128).
func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Webhooks tunes the durable webhook pipeline.
type Webhooks struct {
	MaxBodyBytes int      `yaml:"max_body_bytes"` // default 64 KiB
	Workers      int      `yaml:"workers"`        // default 8
	MaxAttempts  int      `yaml:"max_attempts"`   // default 20, then dead-letter
	Lease        Duration `yaml:"lease"`          // default 30s
	Backoff      Duration `yaml:"backoff"`        // first retry delay, doubled each time; default 1s
	MaxBackoff   Duration `yaml:"max_backoff"`    // default 1h
	DedupeTTL    Duration `yaml:"dedupe_ttl"`     // default 48h
	// SourceIPs, when set, are the only addresses (CIDR prefixes or single
	// addresses) webhooks are taken from: Plaid's published webhook
	// addresses. Others are answered 403 before any verification or key
	// fetch. Empty (the default): any address.
	SourceIPs []string `yaml:"source_ips"`
	// IntakeFirstAt: verified webhooks waiting for the store at once that
	// make a burst (when the process is also short of CPU), answered
	// before forwarding goes on at full pace; default 8, -1 turns it off.
	IntakeFirstAt int `yaml:"intake_first_at"`
}

// SourcePrefixes parses SourceIPs; Validate has checked it.
func (w *Webhooks) SourcePrefixes() []netip.Prefix { return prefixes(w.SourceIPs) }

// Emulator is the embedded local Plaid sandbox emulator (dev mode).
type Emulator struct {
	Enabled  bool   `yaml:"enabled"`
	Listen   string `yaml:"listen"`    // default 127.0.0.1:8099
	ClientID string `yaml:"client_id"` // default safeclose-dev
	Secret   string `yaml:"secret"`    // emulator-only credential, not a real secret; default safeclose-dev-secret
	State    string `yaml:"state"`     // state file; empty = memory
}

// Tenant is one workspace, matched by Host.
type Tenant struct {
	Name     string    `yaml:"name"`
	Hosts    []string  `yaml:"hosts"`
	Upstream Upstreams `yaml:"upstream"` // http(s)://host:port of the tenant's app, or a list; empty = no reverse proxy
	// Upstream pool settings (issue 13).
	UpstreamCAFile string           `yaml:"upstream_ca_file"` // PEM CAs for https upstreams; empty = system roots
	Timeouts       UpstreamTimeouts `yaml:"timeouts"`
	TLS            *TenantTLS       `yaml:"tls"` // certificate for the tenant's hosts (SNI); nil: the default one
	Plaid          Plaid            `yaml:"plaid"`
	Auth           Auth             `yaml:"auth"`
	WebhookPlugins []Plugin         `yaml:"webhook_plugins"`
	Forward        []Destination    `yaml:"forward"`
}

// Upstreams is one upstream URL (a YAML string) or several (a sequence),
// balanced round-robin.
type Upstreams []string

// UnmarshalYAML implements yaml.Unmarshaler.
func (u *Upstreams) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var s string
		if err := n.Decode(&s); err != nil {
			return err
		}
		*u = nil
		if s != "" {
			*u = Upstreams{s}
		}
		return nil
	}
	var l []string
	if err := n.Decode(&l); err != nil {
		return err
	}
	*u = l
	return nil
}

// UpstreamTimeouts bound a tenant's upstream calls; zero means the default.
type UpstreamTimeouts struct {
	Connect        Duration `yaml:"connect"`         // default 3s
	ResponseHeader Duration `yaml:"response_header"` // wait for headers, and longest silence within a body; default 30s
	Idle           Duration `yaml:"idle"`            // unused pooled connections closed after; default 30s
}

// Plaid is a tenant's Plaid account.
type Plaid struct {
	// Env is "sandbox", "production", "emulator" (the embedded emulator) or a base URL.
	Env          string    `yaml:"env"`
	ClientID     SecretRef `yaml:"client_id"`
	Secret       SecretRef `yaml:"secret"`
	ClientName   string    `yaml:"client_name"`
	Products     []string  `yaml:"products"`
	CountryCodes []string  `yaml:"country_codes"`
	Language     string    `yaml:"language"`
	WebhookURL   string    `yaml:"webhook_url"`
	RedirectURI  string    `yaml:"redirect_uri"`
}

// Auth picks the session authenticator: a Wasm plugin or built-in API keys.
type Auth struct {
	Plugin  *Plugin  `yaml:"plugin"`
	APIKeys []APIKey `yaml:"api_keys"`
}

// APIKey is a built-in static key: "Authorization: Bearer <key>" → User.
// Only the key's SHA-256 is in the config.
type APIKey struct {
	SHA256 string `yaml:"sha256"`
	User   string `yaml:"user"`
}

// Plugin is a Wasm plugin pinned by sha256.
type Plugin struct {
	Name         string               `yaml:"name"`
	Path         string               `yaml:"path"`
	SHA256       string               `yaml:"sha256"` // pin; without it the plugin loads with a loud warning
	Config       map[string]any       `yaml:"config"`
	Secrets      map[string]SecretRef `yaml:"secrets"`
	Capabilities []string             `yaml:"capabilities"` // config, log, clock, kv, crypto, body
	Timeout      Duration             `yaml:"timeout"`      // default 100ms
	MemoryPages  uint32               `yaml:"memory_pages"` // 64 KiB pages; default 512, max 1024
	PoolSize     int                  `yaml:"pool_size"`    // default min(GOMAXPROCS, 16), max 16
	BodyLimit    int                  `yaml:"body_limit"`   // bytes of body the plugin may read; default 0
	CacheTTL     Duration             `yaml:"cache_ttl"`    // reuse allow decisions for identical inputs; default 0 (off)
	CPUShare     float64              `yaml:"cpu_share"`    // cores of guest computation on average; 0: the unset ones share all cores but one
	// JWT is Config["jwt"], typed (jwt.go); Decode fills it. Nil: no section.
	JWT *JWT `yaml:"-"`
}

// Destination is where a tenant's webhook events may be forwarded, signed with
// the Standard Webhooks scheme.
type Destination struct {
	Name   string    `yaml:"name"`
	URL    string    `yaml:"url"`
	Secret SecretRef `yaml:"secret"` // whsec_… signing secret
}

// Default returns the prototype every decoded file starts from. Values that
// a runtime package also applies to a zero option are that package's
// (proxy.Default…, store.DefaultDedupeTTL); configs imports nothing from the
// module, so they are repeated here, and TestConfigDefaultsMatchPackages in
// cmd/safeclose fails if the two drift (RATIONALE.md "Where defaults live").
func Default() File {
	return File{
		Listen:      "127.0.0.1:8080",
		AdminListen: "127.0.0.1:9090",
		DataDir:     "./data",
		Store:       Store{Backend: BackendBadger},
		LogLevel:    "info",
		AccessLog:   true,
		Limits: Limits{
			MaxBodyBytes: 64 << 10, ReadTimeout: Duration(10e9), WriteTimeout: Duration(30e9),
			IdleTimeout: Duration(60e9), UpstreamConns: 512, PlaidTimeout: Duration(15e9),
			MaxResponseBytes: 64 << 20, MaxWebSockets: 1000, WebSocketIdleTimeout: Duration(60e9),
			MaxConns: 10000, MaxHeaderBytes: 16 << 10, PlaidCallsPerUser: 60,
		},
		Webhooks: Webhooks{
			MaxBodyBytes: 64 << 10, Workers: 8, MaxAttempts: 20, Lease: Duration(30e9),
			Backoff: Duration(1e9), MaxBackoff: Duration(3600e9), DedupeTTL: Duration(48 * 3600e9), IntakeFirstAt: 8,
		},
		Emulator: Emulator{Listen: "127.0.0.1:8099", ClientID: "safeclose-dev", Secret: "safeclose-dev-secret"},
	}
}

// Load reads and decodes the file at path, or the embedded default when path is empty.
func Load(path string) (*File, error) {
	if path == "" {
		return Decode(bytes.NewReader(DefaultYAML))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("configs: %w", err)
	}
	defer f.Close()
	return Decode(f)
}

// Decode strictly decodes a YAML config (unknown keys are errors) over Default
// and fills per-tenant defaults. It does not validate; call Validate.
func Decode(r io.Reader) (*File, error) {
	f := Default()
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("configs: empty config")
		}
		return nil, fmt.Errorf("configs: %w", err)
	}
	if err := onlyDocument(dec); err != nil {
		return nil, err
	}
	for i := range f.Tenants {
		t := &f.Tenants[i]
		if t.Plaid.Language == "" {
			t.Plaid.Language = "en"
		}
		if len(t.Plaid.CountryCodes) == 0 {
			t.Plaid.CountryCodes = []string{"US"}
		}
		if len(t.Plaid.Products) == 0 {
			t.Plaid.Products = []string{"transactions"}
		}
		if t.Plaid.ClientName == "" {
			t.Plaid.ClientName = t.Name
		}
	}
	if err := f.decodeJWTs(); err != nil {
		return nil, err
	}
	if f.PluginCache == "" && f.DataDir != "" {
		f.PluginCache = strings.TrimSuffix(f.DataDir, "/") + "/wasm-cache"
	}
	return &f, nil
}

var (
	nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	hexRE  = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// subjectOK is set_subject's rule (hostabi/ABI.md §4.2) for an api_keys
// user: at most 256 bytes, no control byte but tab, and no space or tab at
// either end, which HTTP strips (the upstream would see another user).
func subjectOK(u string) bool {
	if len(u) > 256 || u[0] == ' ' || u[0] == '\t' || u[len(u)-1] == ' ' || u[len(u)-1] == '\t' {
		return false
	}
	for i := 0; i < len(u); i++ {
		if c := u[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// CapabilityNames returns the capability names Validate accepts. They are
// hostabi.CapabilityNames(), which configs may not import; a test in
// cmd/safeclose asserts the two lists are equal.
func CapabilityNames() []string {
	return []string{"config", "log", "clock", "kv", "crypto", "body"}
}

// Validate reports every problem at once, each prefixed by its field path.
// It is pure: no I/O, no environment reads.
func (f *File) Validate() error {
	var errs []error
	add := func(path, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, a...)))
	}
	checkAddr := func(path, v string) {
		if _, _, err := net.SplitHostPort(v); err != nil {
			add(path, "must be host:port (%v)", err)
		}
	}
	checkAddr("listen", f.Listen)
	checkAddr("admin_listen", f.AdminListen)
	if pp := f.ProxyProtocol; pp != nil {
		if len(pp.From) == 0 {
			add("proxy_protocol.from", "required: the load balancers' addresses or CIDR ranges")
		}
		for i, s := range pp.From {
			if _, err := parsePrefix(s); err != nil {
				add(fmt.Sprintf("proxy_protocol.from[%d]", i), "must be an IP address or a CIDR range")
			}
		}
		if f.Limits.MaxConnsPerIP > 0 {
			add("limits.max_conns_per_ip", "cannot be combined with proxy_protocol: connections are counted as they are accepted, before the PROXY header names the client; bound clients on the load balancer")
		}
	}
	if f.DataDir == "" {
		add("data_dir", "required")
	}
	if err := f.Keys.check(); err != nil {
		add("keys", "%v", err)
	}
	f.Store.validate(add)
	switch f.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		add("log_level", "must be debug, info, warn or error")
	}
	if f.Limits.MaxBodyBytes <= 0 || f.Limits.MaxBodyBytes > 1<<30 {
		add("limits.max_body_bytes", "must be in 1..1073741824")
	}
	if f.Limits.MaxResponseBytes <= 0 {
		add("limits.max_response_bytes", "must be at least 1")
	}
	if f.Limits.MaxHeaderBytes != 0 && (f.Limits.MaxHeaderBytes < 1<<10 || f.Limits.MaxHeaderBytes > 1<<20) {
		add("limits.max_header_bytes", "must be in 1024..1048576 (0 means the default, 16384)")
	}
	if f.Limits.PlaidCallsPerUser < 0 || f.Limits.PlaidCallsPerUser > 60000 {
		add("limits.plaid_calls_per_user", "must be in 0..60000 (a minute; 0 means the default, 60)")
	}
	if f.Limits.MaxConns < 0 {
		add("limits.max_conns", "must not be negative (0 means the default, 10000)")
	}
	if f.Limits.MaxConnsPerIP < 0 {
		add("limits.max_conns_per_ip", "must not be negative (0 means no bound per address)")
	}
	if f.Limits.MaxWebSockets < 0 {
		add("limits.max_websockets", "must not be negative (0 means the default, 1000)")
	}
	if d := f.Limits.WebSocketIdleTimeout.Std(); d < 0 || d > 24*3600e9 {
		add("limits.websocket_idle_timeout", "must be in 0..24h")
	}
	if f.Webhooks.MaxBodyBytes <= 0 || f.Webhooks.MaxBodyBytes > 1<<20 {
		add("webhooks.max_body_bytes", "must be in 1..1048576")
	}
	if f.Webhooks.Workers < 1 || f.Webhooks.Workers > 256 {
		add("webhooks.workers", "must be in 1..256")
	}
	for i, s := range f.Webhooks.SourceIPs {
		if _, err := parsePrefix(s); err != nil {
			add(fmt.Sprintf("webhooks.source_ips[%d]", i), "must be an IP address or a CIDR range (%v)", err)
		}
	}
	if f.Webhooks.IntakeFirstAt < -1 || f.Webhooks.IntakeFirstAt == 0 {
		add("webhooks.intake_first_at", "must be at least 1, or -1 to turn pacing off")
	}
	if f.Webhooks.MaxAttempts < 1 {
		add("webhooks.max_attempts", "must be at least 1")
	}
	if f.Webhooks.Lease.Std() < 1e9 {
		add("webhooks.lease", "must be at least 1s")
	}
	if f.Emulator.Enabled {
		checkAddr("emulator.listen", f.Emulator.Listen)
	}
	f.validateOperator(add)
	f.validateTLS(add)
	if len(f.Tenants) == 0 {
		add("tenants", "at least one tenant is required")
	}
	names, hosts := map[string]bool{}, map[string]string{}
	for i, t := range f.Tenants {
		p := fmt.Sprintf("tenants[%d]", i)
		if !nameRE.MatchString(t.Name) {
			add(p+".name", "must match %s", nameRE)
		} else if names[t.Name] {
			add(p+".name", "duplicate tenant %q", t.Name)
		}
		names[t.Name] = true
		if len(t.Hosts) == 0 {
			add(p+".hosts", "at least one host is required")
		}
		for j, h := range t.Hosts {
			h = strings.ToLower(h)
			if h == "" || strings.ContainsAny(h, "/ ") || badWildcard(h) {
				add(fmt.Sprintf("%s.hosts[%d]", p, j), "bad host %q", h)
			} else if o, dup := hosts[h]; dup {
				add(fmt.Sprintf("%s.hosts[%d]", p, j), "host %q already belongs to tenant %q", h, o)
			}
			hosts[h] = t.Name
		}
		validateUpstream(p, t, add)
		f.validatePlaid(p+".plaid", t.Plaid, add)
		if t.Auth.Plugin == nil && len(t.Auth.APIKeys) == 0 {
			add(p+".auth", "needs a plugin or api_keys (requests are never let through unauthenticated)")
		}
		if t.Auth.Plugin != nil && len(t.Auth.APIKeys) > 0 {
			add(p+".auth", "set either plugin or api_keys, not both")
		}
		keyAt := map[string]int{}
		for j, k := range t.Auth.APIKeys {
			kp := fmt.Sprintf("%s.auth.api_keys[%d]", p, j)
			if !hexRE.MatchString(k.SHA256) {
				add(kp+".sha256", "must be 64 lowercase hex characters (sha256 of the key)")
			} else if i, dup := keyAt[k.SHA256]; dup {
				// One key, two entries: which user it means would depend on
				// the order of a map.
				add(kp+".sha256", "the same key as api_keys[%d]: a key names one user", i)
			} else {
				keyAt[k.SHA256] = j
			}
			if k.User == "" {
				add(kp+".user", "required")
			} else if !subjectOK(k.User) {
				add(kp+".user", "must be at most 256 bytes, without control characters and without a space or tab at either end (it is the X-Safeclose-User header and the user's key in the store)")
			}
		}
		if t.Auth.Plugin != nil {
			validatePlugin(p+".auth.plugin", *t.Auth.Plugin, add)
		}
		for j, pl := range t.WebhookPlugins {
			validatePlugin(fmt.Sprintf("%s.webhook_plugins[%d]", p, j), pl, add)
		}
		dests := map[string]bool{}
		for j, d := range t.Forward {
			dp := fmt.Sprintf("%s.forward[%d]", p, j)
			if !nameRE.MatchString(d.Name) {
				add(dp+".name", "must match %s", nameRE)
			} else if dests[d.Name] {
				add(dp+".name", "duplicate destination %q", d.Name)
			}
			dests[d.Name] = true
			if !isHTTPURL(d.URL) {
				add(dp+".url", "must be an http(s) URL")
			}
			if d.Secret == "" {
				add(dp+".secret", "required (Standard Webhooks signing secret)")
			} else if err := d.Secret.check(); err != nil {
				add(dp+".secret", "%v", err)
			}
		}
	}
	return errors.Join(errs...)
}

func (f *File) validatePlaid(p string, pl Plaid, add func(string, string, ...any)) {
	switch pl.Env {
	case "sandbox", "production":
		if pl.ClientID == "" {
			add(p+".client_id", "required for env %q", pl.Env)
		}
		if pl.Secret == "" {
			add(p+".secret", "required for env %q", pl.Env)
		}
	case "emulator":
		if !f.Emulator.Enabled {
			add(p+".env", `"emulator" needs emulator.enabled: true`)
		}
	case "":
		add(p+".env", `required: "sandbox", "production", "emulator" or a base URL`)
	default:
		if !isHTTPURL(pl.Env) {
			add(p+".env", `must be "sandbox", "production", "emulator" or an http(s) base URL`)
		}
		if pl.ClientID == "" || pl.Secret == "" {
			add(p, "client_id and secret are required for a base URL")
		}
	}
	for _, r := range []struct {
		path string
		ref  SecretRef
	}{{p + ".client_id", pl.ClientID}, {p + ".secret", pl.Secret}} {
		if err := r.ref.check(); err != nil {
			add(r.path, "%v", err)
		}
	}
	if pl.WebhookURL != "" {
		if !isHTTPURL(pl.WebhookURL) {
			add(p+".webhook_url", "must be an http(s) URL")
		}
	}
	if len(pl.ClientName) > 30 {
		add(p+".client_name", "at most 30 characters (Plaid shows it in Link)")
	}
}

func validatePlugin(p string, pl Plugin, add func(string, string, ...any)) {
	if pl.Path == "" {
		add(p+".path", "required")
	}
	if pl.SHA256 != "" && !hexRE.MatchString(pl.SHA256) {
		add(p+".sha256", "must be 64 lowercase hex characters")
	}
	if pl.Timeout.Std() < 0 || pl.Timeout.Std() > 10e9 {
		add(p+".timeout", "must be in 0..10s")
	}
	validatePluginLimits(p, pl, add)
	pl.JWT.validate(p+".config.jwt", add)
	for j, c := range pl.Capabilities {
		if !slices.Contains(CapabilityNames(), c) {
			add(fmt.Sprintf("%s.capabilities[%d]", p, j), "unknown capability %q", c)
		}
	}
	for k, ref := range pl.Secrets {
		if err := ref.check(); err != nil {
			add(p+".secrets."+k, "%v", err)
		}
	}
	validateJWTSecrets(p, pl, add)
	if pl.BodyLimit < 0 || pl.BodyLimit > 1<<20 {
		add(p+".body_limit", "must be in 0..1048576")
	}
}

// validateUpstream checks a tenant's upstream URLs and timeouts (issue 13).
func validateUpstream(p string, t Tenant, add func(string, string, ...any)) {
	single := len(t.Upstream) == 1
	seen := map[string]bool{}
	for j, raw := range t.Upstream {
		up := fmt.Sprintf("%s.upstream[%d]", p, j)
		if single {
			up = p + ".upstream"
		}
		if !isHTTPURL(raw) {
			add(up, "must be an http(s) URL")
		} else if seen[raw] {
			add(up, "duplicate upstream %q", raw)
		}
		seen[raw] = true
	}
	if t.UpstreamCAFile != "" && len(t.Upstream) == 0 {
		add(p+".upstream_ca_file", "set without an upstream")
	}
	for _, d := range []struct {
		name string
		v    Duration
	}{{"connect", t.Timeouts.Connect}, {"response_header", t.Timeouts.ResponseHeader}, {"idle", t.Timeouts.Idle}} {
		if d.v.Std() < 0 || d.v.Std() > 3600e9 {
			add(p+".timeouts."+d.name, "must be in 0..1h (0 means the default)")
		}
	}
}
