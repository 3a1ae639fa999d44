package configs

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// validateOperator holds the checks that keep an operator's mistake from
// silently switching a protection off (issue 9.17): negative durations and a
// keyring stored beside the data it protects.
func (f *File) validateOperator(add func(string, string, ...any)) {
	durations := []struct {
		path string
		d    Duration
	}{
		{"limits.read_timeout", f.Limits.ReadTimeout},
		{"limits.write_timeout", f.Limits.WriteTimeout},
		{"limits.idle_timeout", f.Limits.IdleTimeout},
		{"limits.plaid_timeout", f.Limits.PlaidTimeout},
		{"webhooks.lease", f.Webhooks.Lease},
		{"webhooks.backoff", f.Webhooks.Backoff},
		{"webhooks.max_backoff", f.Webhooks.MaxBackoff},
		{"webhooks.dedupe_ttl", f.Webhooks.DedupeTTL},
	}
	for i, t := range f.Tenants {
		var ps []Plugin
		var paths []string
		if t.Auth.Plugin != nil {
			ps, paths = append(ps, *t.Auth.Plugin), append(paths, fmt.Sprintf("tenants[%d].auth.plugin", i))
		}
		for j, pl := range t.WebhookPlugins {
			ps, paths = append(ps, pl), append(paths, fmt.Sprintf("tenants[%d].webhook_plugins[%d]", i, j))
		}
		for k, pl := range ps {
			// timeout is range-checked by validatePlugin.
			durations = append(durations, struct {
				path string
				d    Duration
			}{paths[k] + ".cache_ttl", pl.CacheTTL})
		}
	}
	for _, d := range durations {
		if d.d < 0 {
			add(d.path, "must not be negative (zero means the default)")
		}
	}
	if s := string(f.Keys); strings.HasPrefix(s, "file:") && f.DataDir != "" && PathWithin(f.DataDir, s[5:]) {
		add("keys", "the keyring file is inside data_dir (%s): keep keys apart from the data they protect", f.DataDir)
	}
}

// onlyDocument refuses a second YAML document after the one decoded: it
// would be silently ignored (issue 9.17). A trailing "---" alone is fine.
func onlyDocument(dec *yaml.Decoder) error {
	for range 64 {
		var n yaml.Node
		err := dec.Decode(&n)
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return fmt.Errorf("configs: after the first document: %w", err)
		case !emptyDocument(&n):
			return errors.New(`configs: the file holds more than one YAML document (a second "---"); put everything in one document`)
		}
	}
	return errors.New("configs: too many empty YAML documents")
}

func emptyDocument(n *yaml.Node) bool {
	if n.Kind == yaml.DocumentNode {
		return len(n.Content) == 0 || (len(n.Content) == 1 && n.Content[0].Tag == "!!null")
	}
	return n.Kind == 0
}

// PathWithin reports whether path p lies inside directory dir (or is dir),
// comparing cleaned paths lexically: it reads nothing from disk. Callers that
// mix relative and absolute paths make both absolute first.
func PathWithin(dir, p string) bool {
	dir, p = filepath.Clean(dir), filepath.Clean(p)
	if filepath.IsAbs(dir) != filepath.IsAbs(p) {
		return false
	}
	rel, err := filepath.Rel(dir, p)
	if err != nil {
		return false
	}
	return rel == "." || (rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)))
}

// Warnings lists settings that are valid but risky, each prefixed by its
// field path, for the caller to log at start. Like Validate it is pure.
func (f *File) Warnings() []string {
	var ws []string
	if !loopback(f.AdminListen) {
		ws = append(ws, fmt.Sprintf("admin_listen: %s is not a loopback address: /metrics and /readyz are unauthenticated; keep the admin listener private (firewall it or bind 127.0.0.1)", f.AdminListen))
	}
	if f.Emulator.Enabled && !loopback(f.Emulator.Listen) {
		ws = append(ws, fmt.Sprintf("emulator.listen: %s is not a loopback address: the Plaid emulator is for local development", f.Emulator.Listen))
	}
	for i, t := range f.Tenants {
		for j, d := range t.Forward {
			// A forward's signature covers its id, time and body, not the
			// X-Safeclose-User and -Tenant headers beside it: over plain
			// HTTP anyone on the path can read the event and change them.
			if u, err := url.Parse(d.URL); err == nil && u.Scheme == "http" && !loopback(net.JoinHostPort(u.Hostname(), "80")) {
				ws = append(ws, fmt.Sprintf("tenants[%d].forward[%d].url: %s is plain http to another host: events travel readable, and the user and tenant headers beside the signed body can be changed on the way; use https", i, j, u.Scheme+"://"+u.Host))
			}
		}
	}
	for _, sf := range f.secretFiles() {
		if fi, err := os.Stat(sf.file); err == nil && fi.Mode().Perm()&0o077 != 0 {
			ws = append(ws, fmt.Sprintf("%s: %s can be read by other users (mode %v): it holds %s; chmod 600 it", sf.path, sf.file, fi.Mode().Perm(), sf.holds))
		}
	}
	return ws
}

// secretFile is a file a setting reads a secret from.
type secretFile struct{ path, file, holds string }

// secretFiles lists every file: secret reference (the keyring, the
// PostgreSQL DSN, each tenant's Plaid credentials, forward and plugin
// secrets) and every TLS private key, by field path, for Warnings: any of
// them readable by other local users gives those users the secret. Only
// the keyring was checked before a review (2026-12-08) found a 0644 DSN
// file, with the database password, accepted without a word.
func (f *File) secretFiles() []secretFile {
	var out []secretFile
	ref := func(path string, r SecretRef, holds string) {
		if s := string(r); strings.HasPrefix(s, "file:") {
			out = append(out, secretFile{path, s[5:], holds})
		}
	}
	key := func(path, file string) {
		if file != "" {
			out = append(out, secretFile{path, file, "a TLS private key"})
		}
	}
	ref("keys", f.Keys, "the sealing keys")
	ref("store.dsn", f.Store.DSN, "the database connection string")
	if f.TLS != nil {
		key("tls.key_file", f.TLS.KeyFile)
	}
	plugin := func(p string, pl Plugin) {
		for _, name := range slices.Sorted(maps.Keys(pl.Secrets)) {
			ref(p+".secrets."+name, pl.Secrets[name], "a plugin secret")
		}
	}
	for i, t := range f.Tenants {
		p := fmt.Sprintf("tenants[%d]", i)
		ref(p+".plaid.client_id", t.Plaid.ClientID, "Plaid credentials")
		ref(p+".plaid.secret", t.Plaid.Secret, "Plaid credentials")
		for j, d := range t.Forward {
			ref(fmt.Sprintf("%s.forward[%d].secret", p, j), d.Secret, "a webhook signing secret")
		}
		if t.Auth.Plugin != nil {
			plugin(p+".auth.plugin", *t.Auth.Plugin)
		}
		for j, pl := range t.WebhookPlugins {
			plugin(fmt.Sprintf("%s.webhook_plugins[%d]", p, j), pl)
		}
		if t.TLS != nil {
			key(p+".tls.key_file", t.TLS.KeyFile)
		}
	}
	return out
}

// loopback reports whether a host:port listens on loopback only. An empty
// host (":9090") listens on every interface.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return true // Validate reports it
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// isHTTPURL reports whether s is an absolute http or https URL with a host:
// the one check behind every "must be an http(s) URL" in Validate.
func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}
