package main

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"

	"github.com/safeclose/safeclose/configs"
	"github.com/safeclose/safeclose/hostabi"
	"github.com/safeclose/safeclose/internal/stdwebhooks"
	"github.com/safeclose/safeclose/proxy"
)

// builder turns the config's tenants into proxy.Tenants, loading plugins.
type builder struct {
	engine  *hostabi.Engine
	log     *slog.Logger
	emuAddr string
	// load loads one plugin; nil means engine.Load. Tests wrap it.
	load func(context.Context, hostabi.PluginOptions) (*hostabi.Plugin, error)
	// warmers is how many tenants are built at once; zero means
	// max(2, GOMAXPROCS). Loading runs each plugin's _initialize, so one
	// slow plugin must not hold the others back (issue 9.15).
	warmers int
}

// built is one tenant built from the config: ready to serve, or unavailable
// (tenant.Unavailable set, err saying why), in which case it fails closed.
type built struct {
	tenant  proxy.Tenant
	plugins []*hostabi.Plugin // owned by this build; closed when it is retired
	err     error             // for the log: may name files, never secrets
}

// tenantError is why one tenant could not be built: a fixed reason class and
// the field at fault (shown on /readyz), and the cause (logged only).
type tenantError struct {
	reason, field string
	err           error
}

func (e *tenantError) Error() string { return e.field + ": " + e.reason + ": " + e.err.Error() }
func (e *tenantError) Unwrap() error { return e.err }

// Reason classes of proxy.Unavailability.
const (
	reasonPluginMissing = "plugin_missing"
	reasonPluginSHA256  = "plugin_sha256_mismatch"
	reasonPluginRefused = "plugin_refused"
	reasonSecret        = "secret_unavailable"
	reasonConfigInvalid = "config_invalid"
)

func plaidBaseURL(env, emuAddr string) string {
	switch env {
	case "sandbox":
		return "https://sandbox.plaid.com"
	case "production":
		return "https://production.plaid.com"
	case "emulator":
		return "http://" + emuAddr
	}
	return env
}

// tenants builds every tenant of cfg, several at once. A tenant that cannot
// be built comes back unavailable; it never stops the others.
func (b *builder) tenants(ctx context.Context, cfg *configs.File) []*built {
	n := b.warmers
	if n <= 0 {
		n = max(2, runtime.GOMAXPROCS(0))
	}
	share := defaultShare(cfg)
	if share.plugins > 0 {
		b.log.Info("plugins without cpu_share get a default share of the cores",
			"plugins", share.plugins, "cores_each", share.cores, "gomaxprocs", runtime.GOMAXPROCS(0))
	}
	out := make([]*built, len(cfg.Tenants))
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for i := range cfg.Tenants {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i] = b.tenant(ctx, cfg, i, share.cores)
		}()
	}
	wg.Wait()
	return out
}

// defaultShare is the cpu_share of cfg's plugins that leave it unset, and
// how many they are: together they leave a core to the rest of the process
// (hostabi.DefaultCPUShareAmong), where each alone would get half the
// cores and two spinning plugins every core.
func defaultShare(cfg *configs.File) (d struct {
	plugins int
	cores   float64
}) {
	for _, tc := range cfg.Tenants {
		if tc.Auth.Plugin != nil && tc.Auth.Plugin.CPUShare == 0 {
			d.plugins++
		}
		for _, pc := range tc.WebhookPlugins {
			if pc.CPUShare == 0 {
				d.plugins++
			}
		}
	}
	d.cores = hostabi.DefaultCPUShareAmong(d.plugins)
	return d
}

// tenant builds cfg.Tenants[i]; on error the plugins it loaded are closed
// and the tenant comes back unavailable with the reason. share is the
// cpu_share of its plugins that leave it unset (defaultShare).
func (b *builder) tenant(ctx context.Context, cfg *configs.File, i int, share float64) *built {
	bt := &built{}
	t, err := b.buildTenant(ctx, cfg, i, bt, share)
	if err == nil {
		bt.tenant = t
		return bt
	}
	closePlugins(bt.plugins)
	tc := cfg.Tenants[i]
	te := &tenantError{}
	if !errors.As(err, &te) {
		te = &tenantError{reason: reasonConfigInvalid, field: fmt.Sprintf("tenants[%d]", i), err: err}
	}
	return &built{
		tenant: proxy.Tenant{Name: tc.Name, Hosts: tc.Hosts, Unavailable: &proxy.Unavailability{Reason: te.reason, Field: te.field}},
		err:    err,
	}
}

func (b *builder) buildTenant(ctx context.Context, cfg *configs.File, i int, bt *built, share float64) (proxy.Tenant, error) {
	tc := cfg.Tenants[i]
	path := fmt.Sprintf("tenants[%d]", i)
	fail := func(reason, field string, err error) (proxy.Tenant, error) {
		return proxy.Tenant{}, &tenantError{reason: reason, field: path + "." + field, err: err}
	}
	t := proxy.Tenant{
		Name: tc.Name, Hosts: tc.Hosts, Upstreams: tc.Upstream, UpstreamConns: cfg.Limits.UpstreamConns,
		UpstreamTimeouts: proxy.UpstreamTimeouts{
			Connect: tc.Timeouts.Connect.Std(), ResponseHeader: tc.Timeouts.ResponseHeader.Std(), Idle: tc.Timeouts.Idle.Std(),
		},
		Plaid: proxy.PlaidOptions{
			BaseURL: plaidBaseURL(tc.Plaid.Env, b.emuAddr), ClientName: tc.Plaid.ClientName,
			Products: tc.Plaid.Products, CountryCodes: tc.Plaid.CountryCodes, Language: tc.Plaid.Language,
			WebhookURL: tc.Plaid.WebhookURL, RedirectURI: tc.Plaid.RedirectURI,
		},
	}
	if tc.UpstreamCAFile != "" {
		cas, err := loadCAs(tc.UpstreamCAFile)
		if err != nil {
			return fail(reasonConfigInvalid, "upstream_ca_file", err)
		}
		t.UpstreamCAs = cas
	}
	if tc.Plaid.Env == "emulator" {
		t.Plaid.ClientID, t.Plaid.Secret = cfg.Emulator.ClientID, cfg.Emulator.Secret
	} else {
		id, err := tc.Plaid.ClientID.Resolve()
		if err != nil {
			return fail(reasonSecret, "plaid.client_id", err)
		}
		sec, err := tc.Plaid.Secret.Resolve()
		if err != nil {
			return fail(reasonSecret, "plaid.secret", err)
		}
		t.Plaid.ClientID, t.Plaid.Secret = id.Reveal(), sec.Reveal()
	}
	if tc.Auth.Plugin != nil {
		p, err := b.plugin(ctx, tc.Name, withShare(*tc.Auth.Plugin, share), hostabi.KindAuth)
		if err != nil {
			return fail(pluginReason(err), "auth.plugin", err)
		}
		bt.plugins = append(bt.plugins, p)
		t.Auth = &proxy.PluginAuth{Plugin: p, Tenant: tc.Name, Logger: b.log}
	} else {
		digests := map[string]string{}
		for _, k := range tc.Auth.APIKeys {
			digests[k.SHA256] = k.User
		}
		a, err := proxy.NewAPIKeys(digests)
		if err != nil {
			return fail(reasonConfigInvalid, "auth.api_keys", err)
		}
		t.Auth = a
	}
	for j, pc := range tc.WebhookPlugins {
		p, err := b.plugin(ctx, tc.Name, withShare(pc, share), hostabi.KindEvent)
		if err != nil {
			return fail(pluginReason(err), fmt.Sprintf("webhook_plugins[%d]", j), err)
		}
		bt.plugins = append(bt.plugins, p)
		t.EventPlugins = append(t.EventPlugins, p)
	}
	for j, d := range tc.Forward {
		field := fmt.Sprintf("forward[%d].secret", j)
		sec, err := d.Secret.Resolve()
		if err != nil {
			return fail(reasonSecret, field, err)
		}
		key, err := stdwebhooks.ParseSecret(sec.Reveal())
		if err != nil {
			return fail(reasonConfigInvalid, field, err)
		}
		t.Forward = append(t.Forward, proxy.Destination{Name: d.Name, URL: d.URL, Secret: key})
	}
	return t, nil
}

// pluginError carries the reason class of a plugin that could not be loaded.
type pluginError struct {
	reason string
	err    error
}

func (e *pluginError) Error() string { return e.err.Error() }
func (e *pluginError) Unwrap() error { return e.err }

func pluginReason(err error) string {
	if pe := (*pluginError)(nil); errors.As(err, &pe) {
		return pe.reason
	}
	return reasonPluginRefused
}

// loadCAs reads a PEM bundle of CA certificates for verifying https
// upstreams.
func loadCAs(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate found", path)
	}
	return p, nil
}

func (b *builder) plugin(ctx context.Context, tenant string, pc configs.Plugin, kind hostabi.Kind) (*hostabi.Plugin, error) {
	wasm, err := os.ReadFile(pc.Path)
	if err != nil {
		return nil, &pluginError{reasonPluginMissing, fmt.Errorf("read %s: %w (build the example plugins with `make plugins`)", pc.Path, err)}
	}
	sum := sha256.Sum256(wasm)
	if pc.SHA256 == "" {
		b.log.Warn("plugin is not pinned by sha256; pin it in production", "tenant", tenant, "path", pc.Path, "sha256", hex.EncodeToString(sum[:]))
	} else if !strings.EqualFold(pc.SHA256, hex.EncodeToString(sum[:])) {
		return nil, &pluginError{reasonPluginSHA256, fmt.Errorf("%s: sha256 is %x, the config pins %s", pc.Path, sum, pc.SHA256)}
	}
	var conf []byte
	if pc.Config != nil {
		if conf, err = json.Marshal(pc.Config); err != nil {
			return nil, &pluginError{reasonConfigInvalid, fmt.Errorf("config: %w", err)}
		}
	}
	secrets := map[string][]byte{}
	for name, ref := range pc.Secrets {
		s, err := ref.Resolve()
		if err != nil {
			return nil, &pluginError{reasonSecret, fmt.Errorf("secrets.%s: %w", name, err)}
		}
		secrets[name] = s.Bytes()
	}
	jwt, err := jwtOptions(pc.JWT)
	if err != nil {
		return nil, &pluginError{reasonConfigInvalid, fmt.Errorf("config.jwt: %w", err)}
	}
	caps, err := hostabi.ParseCapabilities(pc.Capabilities)
	if err != nil {
		return nil, &pluginError{reasonConfigInvalid, fmt.Errorf("capabilities: %w", err)}
	}
	name := pc.Name
	if name == "" {
		name = pc.Path
	}
	load := b.load
	if load == nil {
		load = b.engine.Load
	}
	return load(ctx, hostabi.PluginOptions{
		Tenant: tenant, Name: name, Kind: kind, Wasm: wasm, SHA256: pc.SHA256, Config: conf,
		Caps:             caps,
		Secrets:          secrets,
		JWT:              jwt,
		MemoryLimitPages: pc.MemoryPages,
		Timeout:          pc.Timeout.Std(),
		PoolSize:         pc.PoolSize,
		BodyLimit:        pc.BodyLimit,
		CacheTTL:         pc.CacheTTL.Std(),
		CPUShare:         pc.CPUShare,
	})
}

// withShare is pc with cpu_share set to share when pc leaves it unset.
func withShare(pc configs.Plugin, share float64) configs.Plugin {
	if pc.CPUShare == 0 {
		pc.CPUShare = share
	}
	return pc
}

// jwtOptions turns a plugin's typed jwt section (configs.JWT, decoded and
// validated by configs) into the host's options, reading jwks_file.
func jwtOptions(j *configs.JWT) (hostabi.JWTOptions, error) {
	var o hostabi.JWTOptions
	if j == nil {
		return o, nil
	}
	o.Issuer, o.Audience, o.Leeway, o.HMACSecrets = j.Issuer, j.Audience, j.Leeway.Std(), j.Secrets
	if j.JWKS != nil {
		b, err := json.Marshal(j.JWKS)
		if err != nil {
			return o, fmt.Errorf("jwks: %w", err)
		}
		o.JWKS = b
	}
	if j.JWKSFile != "" {
		b, err := os.ReadFile(j.JWKSFile)
		if err != nil {
			return o, fmt.Errorf("jwks_file: %w", err)
		}
		o.JWKS = b
	}
	return o, nil
}
