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
	"time"

	"github.com/safeclose/safeclose/configs"
	"github.com/safeclose/safeclose/hostabi"
	"github.com/safeclose/safeclose/proxy"
)

// builder turns the config's tenants into proxy.Tenants, loading plugins.
type builder struct {
	engine  *hostabi.Engine
	log     *slog.Logger
	emuAddr string
}

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

// tenants builds every tenant or none: on error the plugins loaded so far are closed.
func (b *builder) tenants(ctx context.Context, cfg *configs.File) (ts []proxy.Tenant, plugins []*hostabi.Plugin, err error) {
	defer func() {
		if err != nil {
			closePlugins(plugins)
			plugins = nil
		}
	}()
	for i, tc := range cfg.Tenants {
		path := fmt.Sprintf("tenants[%d]", i)
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
				return nil, plugins, fmt.Errorf("%s.upstream_ca_file: %w", path, err)
			}
			t.UpstreamCAs = cas
		}
		if tc.Plaid.Env == "emulator" {
			t.Plaid.ClientID, t.Plaid.Secret = cfg.Emulator.ClientID, cfg.Emulator.Secret
		} else {
			id, err := tc.Plaid.ClientID.Resolve()
			if err != nil {
				return nil, plugins, fmt.Errorf("%s.plaid.client_id: %w", path, err)
			}
			sec, err := tc.Plaid.Secret.Resolve()
			if err != nil {
				return nil, plugins, fmt.Errorf("%s.plaid.secret: %w", path, err)
			}
			t.Plaid.ClientID, t.Plaid.Secret = id.Reveal(), sec.Reveal()
		}
		if tc.Auth.Plugin != nil {
			p, err := b.plugin(ctx, tc.Name, *tc.Auth.Plugin, hostabi.KindAuth)
			if err != nil {
				return nil, plugins, fmt.Errorf("%s.auth.plugin: %w", path, err)
			}
			plugins = append(plugins, p)
			t.Auth = &proxy.PluginAuth{Plugin: p, Tenant: tc.Name, Logger: b.log}
		} else {
			digests := map[string]string{}
			for _, k := range tc.Auth.APIKeys {
				digests[k.SHA256] = k.User
			}
			a, err := proxy.NewAPIKeys(digests)
			if err != nil {
				return nil, plugins, fmt.Errorf("%s.auth.api_keys: %w", path, err)
			}
			t.Auth = a
		}
		for j, pc := range tc.WebhookPlugins {
			p, err := b.plugin(ctx, tc.Name, pc, hostabi.KindEvent)
			if err != nil {
				return nil, plugins, fmt.Errorf("%s.webhook_plugins[%d]: %w", path, j, err)
			}
			plugins = append(plugins, p)
			t.EventPlugins = append(t.EventPlugins, p)
		}
		for j, d := range tc.Forward {
			sec, err := d.Secret.Resolve()
			if err != nil {
				return nil, plugins, fmt.Errorf("%s.forward[%d].secret: %w", path, j, err)
			}
			key, err := proxy.ParseSigningSecret(sec.Reveal())
			if err != nil {
				return nil, plugins, fmt.Errorf("%s.forward[%d].secret: %w", path, j, err)
			}
			t.Forward = append(t.Forward, proxy.Destination{Name: d.Name, URL: d.URL, Secret: key})
		}
		ts = append(ts, t)
	}
	return ts, plugins, nil
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
		return nil, fmt.Errorf("read %s: %w (build the example plugins with `make plugins`)", pc.Path, err)
	}
	if pc.SHA256 == "" {
		sum := sha256.Sum256(wasm)
		b.log.Warn("plugin is not pinned by sha256; pin it in production", "tenant", tenant, "path", pc.Path, "sha256", hex.EncodeToString(sum[:]))
	}
	var conf []byte
	if pc.Config != nil {
		if conf, err = json.Marshal(pc.Config); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	secrets := map[string][]byte{}
	for name, ref := range pc.Secrets {
		s, err := ref.Resolve()
		if err != nil {
			return nil, fmt.Errorf("secrets.%s: %w", name, err)
		}
		secrets[name] = s.Bytes()
	}
	jwt, err := jwtOptions(pc.Config)
	if err != nil {
		return nil, fmt.Errorf("config.jwt: %w", err)
	}
	name := pc.Name
	if name == "" {
		name = pc.Path
	}
	return b.engine.Load(ctx, hostabi.PluginOptions{
		Tenant: tenant, Name: name, Kind: kind, Wasm: wasm, SHA256: pc.SHA256, Config: conf,
		Caps: hostabi.Capabilities{
			Config: pc.HasCap("config"), Log: pc.HasCap("log"), Clock: pc.HasCap("clock"),
			KV: pc.HasCap("kv"), Crypto: pc.HasCap("crypto"), Body: pc.HasCap("body"),
		},
		Secrets:          secrets,
		JWT:              jwt,
		MemoryLimitPages: pc.MemoryPages,
		Timeout:          pc.Timeout.Std(),
		PoolSize:         pc.PoolSize,
		BodyLimit:        pc.BodyLimit,
		CacheTTL:         pc.CacheTTL.Std(),
	})
}

// jwtOptions reads the host-side JWT settings a plugin's config may carry
// under "jwt": issuer, audience, leeway, and a JWKS inline ("jwks") or from
// a file ("jwks_file").
func jwtOptions(conf map[string]any) (hostabi.JWTOptions, error) {
	var o hostabi.JWTOptions
	raw, ok := conf["jwt"]
	if !ok {
		return o, nil
	}
	m, ok := raw.(map[string]any)
	if !ok {
		return o, errors.New("must be a mapping")
	}
	o.Issuer, _ = m["issuer"].(string)
	o.Audience, _ = m["audience"].(string)
	if l, ok := m["leeway"].(string); ok {
		d, err := time.ParseDuration(l)
		if err != nil {
			return o, fmt.Errorf("leeway: %w", err)
		}
		o.Leeway = d
	}
	if j, ok := m["jwks"]; ok {
		b, err := json.Marshal(j)
		if err != nil {
			return o, fmt.Errorf("jwks: %w", err)
		}
		o.JWKS = b
	}
	if f, ok := m["jwks_file"].(string); ok {
		b, err := os.ReadFile(f)
		if err != nil {
			return o, fmt.Errorf("jwks_file: %w", err)
		}
		o.JWKS = b
	}
	return o, nil
}
