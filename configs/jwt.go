package configs

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// JWT is the host-side JWT check of a plugin (jwt_verify): the "jwt"
// section of the plugin's config. The section stays in Plugin.Config too,
// so the guest still sees it through get_config.
//
//	config:
//	  jwt:
//	    issuer: https://auth.acme.example   # must equal iss; empty: not checked
//	    audience: acme-app                  # must be in aud; empty: not checked
//	    leeway: 30s                         # clock skew for exp and nbf; default 30s, at most 10m
//	    jwks_file: /etc/safeclose/jwks.json # or jwks: {keys: [...]}; jwks_file wins
type JWT struct {
	Issuer   string   `yaml:"issuer"`
	Audience string   `yaml:"audience"`
	Leeway   Duration `yaml:"leeway"`
	JWKS     any      `yaml:"jwks"`      // an inline JWK set, passed to the host as JSON
	JWKSFile string   `yaml:"jwks_file"` // a JWK set file, read when the plugin is loaded
	// Secrets names the plugin secrets that verify HS256 tokens; [] names
	// none. Unset, the plugin's only secret does; a plugin with the crypto
	// capability and several secrets must set it (validateJWTSecrets).
	Secrets []string `yaml:"secrets"`
}

// MaxJWTLeeway bounds jwt.leeway: a larger skew would keep expired tokens
// valid for long.
const MaxJWTLeeway = Duration(10 * 60e9)

// jwtFields are JWT's YAML keys.
var jwtFields = []string{"issuer", "audience", "leeway", "jwks", "jwks_file", "secrets"}

// lineRE matches the line numbers in yaml's errors, which would point into
// one value re-encoded alone, not into the file.
var lineRE = regexp.MustCompile(`\s*line \d+: `)

// decodeJWT fills pl.JWT from pl.Config["jwt"], strictly: a key JWT does
// not have, or a value of the wrong type, is an error naming the field.
func decodeJWT(path string, pl *Plugin) error {
	raw, ok := pl.Config["jwt"]
	if !ok || raw == nil {
		pl.JWT = nil
		return nil
	}
	path += ".config.jwt"
	m, ok := raw.(map[string]any)
	if !ok {
		return fmt.Errorf("configs: %s: must be a mapping", path)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var j JWT
	fields := map[string]any{"issuer": &j.Issuer, "audience": &j.Audience, "leeway": &j.Leeway, "jwks_file": &j.JWKSFile, "secrets": &j.Secrets}
	for _, k := range keys {
		if k == "jwks" {
			j.JWKS = m[k]
			continue
		}
		dst, ok := fields[k]
		if !ok {
			return fmt.Errorf("configs: %s: unknown field %q (want %v)", path, k, jwtFields)
		}
		// Each value alone through YAML, so the error names its field.
		b, err := yaml.Marshal(m[k])
		if err == nil {
			err = yaml.Unmarshal(b, dst)
		}
		if err != nil {
			return fmt.Errorf("configs: %s.%s: %s", path, k, lineRE.ReplaceAllString(strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:"), ""))
		}
	}
	pl.JWT = &j
	return nil
}

// decodeJWTs fills the JWT of every plugin of f.
func (f *File) decodeJWTs() error {
	for i := range f.Tenants {
		t := &f.Tenants[i]
		if t.Auth.Plugin != nil {
			if err := decodeJWT(fmt.Sprintf("tenants[%d].auth.plugin", i), t.Auth.Plugin); err != nil {
				return err
			}
		}
		for j := range t.WebhookPlugins {
			if err := decodeJWT(fmt.Sprintf("tenants[%d].webhook_plugins[%d]", i, j), &t.WebhookPlugins[j]); err != nil {
				return err
			}
		}
	}
	return nil
}

// validate reports problems under p (a plugin's path + ".config.jwt").
func (j *JWT) validate(p string, add func(string, string, ...any)) {
	if j == nil {
		return
	}
	if j.Leeway < 0 || j.Leeway > MaxJWTLeeway {
		add(p+".leeway", "must be in 0..10m (zero means 30s)")
	}
	if j.JWKS != nil {
		if _, ok := j.JWKS.(map[string]any); !ok {
			add(p+".jwks", "must be a JWK set mapping ({keys: [...]})")
		}
	}
}

// validateJWTSecrets requires config.jwt.secrets of a plugin that could
// verify HS256 tokens (the crypto capability) with several secrets: a
// token's kid picks among every secret jwt.secrets allows, so without the
// list whoever holds any of them (a partner's key for hmac_sha256_verify)
// could sign sessions for any user. Each name must be one of the plugin's
// secrets.
func validateJWTSecrets(p string, pl Plugin, add func(string, string, ...any)) {
	var named []string
	if pl.JWT != nil {
		named = pl.JWT.Secrets
	}
	for i, name := range named {
		if _, ok := pl.Secrets[name]; !ok {
			add(fmt.Sprintf("%s.config.jwt.secrets[%d]", p, i), "%q is not one of the plugin's secrets", name)
		}
	}
	if named != nil || len(pl.Secrets) < 2 || !slices.Contains(pl.Capabilities, "crypto") {
		return
	}
	add(p+".config.jwt.secrets", "required with the crypto capability and several secrets (%s): a token's kid picks among the secrets it allows, so name the ones that verify HS256 session tokens ([] for none)",
		strings.Join(slices.Sorted(maps.Keys(pl.Secrets)), ", "))
}
