package configs

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// pluginTenant is a valid config of one tenant whose auth plugin has the
// given fields (YAML lines after path, each indented as the plugin's own);
// rest follows the tenant's auth section.
func pluginTenant(fields []string, rest string) string {
	plugin := "        path: p.wasm\n"
	for _, f := range fields {
		plugin += "        " + f + "\n"
	}
	return `
tenants:
  - name: a
    hosts: [a.example]
    plaid: {env: sandbox, client_id: env:X, secret: env:Y}
    auth:
      plugin:
` + plugin + rest
}

// jwtTenant is a valid tenant whose auth plugin's config holds jwtYAML (a
// flow mapping) under "jwt".
func jwtTenant(jwtYAML string) string {
	return pluginTenant([]string{"config: {cookie: session, jwt: " + jwtYAML + "}"},
		"    webhook_plugins:\n      - {path: w.wasm, config: {jwt: {issuer: hooks}}}\n")
}

// Issue 10.3: the plugin config's "jwt" section is a typed struct, decoded
// strictly (an unknown field is an error naming it) and validated.
func TestPluginJWTSection(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		jwt        string
		decodeErr  []string // Decode fails with all of these
		validErr   []string // Validate fails with all of these
		wantIssuer string
		wantLeeway time.Duration
	}{
		{name: "typed", jwt: "{issuer: https://id.example, audience: app, leeway: 45s, jwks_file: /etc/jwks.json}",
			wantIssuer: "https://id.example", wantLeeway: 45 * time.Second},
		{name: "inline jwks", jwt: "{issuer: i, jwks: {keys: [{kty: EC, crv: P-256, x: AA, y: AA}]}}", wantIssuer: "i"},
		{name: "unknown field", jwt: "{issuer: i, issuerr: j}",
			decodeErr: []string{"tenants[0].auth.plugin.config.jwt", `unknown field "issuerr"`}},
		{name: "leeway not a duration", jwt: "{leeway: soon}",
			decodeErr: []string{"tenants[0].auth.plugin.config.jwt", "leeway", "soon"}},
		{name: "leeway without unit", jwt: "{leeway: 30}",
			decodeErr: []string{"tenants[0].auth.plugin.config.jwt", "leeway"}},
		{name: "issuer not a string", jwt: "{issuer: [a, b]}",
			decodeErr: []string{"tenants[0].auth.plugin.config.jwt"}},
		{name: "not a mapping", jwt: "[issuer]",
			decodeErr: []string{"tenants[0].auth.plugin.config.jwt", "mapping"}},
		{name: "negative leeway", jwt: "{leeway: -1s}",
			validErr: []string{"tenants[0].auth.plugin.config.jwt.leeway"}},
		{name: "huge leeway", jwt: "{leeway: 24h}",
			validErr: []string{"tenants[0].auth.plugin.config.jwt.leeway"}},
		{name: "jwks not a mapping", jwt: "{jwks: [a]}",
			validErr: []string{"tenants[0].auth.plugin.config.jwt.jwks"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := Decode(strings.NewReader(jwtTenant(tt.jwt)))
			if tt.decodeErr != nil {
				for _, w := range tt.decodeErr {
					if err == nil || !strings.Contains(err.Error(), w) {
						t.Errorf("Decode(jwt: %s) = %v, want an error containing %q", tt.jwt, err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode(jwt: %s) = %v", tt.jwt, err)
			}
			verr := f.Validate()
			if tt.validErr != nil {
				for _, w := range tt.validErr {
					if verr == nil || !strings.Contains(verr.Error(), w) {
						t.Errorf("Validate(jwt: %s) = %v, want an error containing %q", tt.jwt, verr, w)
					}
				}
				return
			}
			if verr != nil {
				t.Fatalf("Validate(jwt: %s) = %v", tt.jwt, verr)
			}
			j := f.Tenants[0].Auth.Plugin.JWT
			if j == nil || j.Issuer != tt.wantIssuer || j.Leeway.Std() != tt.wantLeeway {
				t.Errorf("auth plugin JWT = %+v, want issuer %q leeway %v", j, tt.wantIssuer, tt.wantLeeway)
			}
			if w := f.Tenants[0].WebhookPlugins[0].JWT; w == nil || w.Issuer != "hooks" {
				t.Errorf("webhook plugin JWT = %+v, want issuer hooks", w)
			}
			// The guest still sees the section through get_config.
			if _, ok := f.Tenants[0].Auth.Plugin.Config["jwt"]; !ok {
				t.Error(`Config["jwt"] was removed; the guest reads it through get_config`)
			}
		})
	}
	f, err := Decode(strings.NewReader(jwtTenant("{}")))
	if err != nil || f.Tenants[0].Auth.Plugin.JWT == nil {
		t.Errorf("Decode(jwt: {}) = %v, JWT %+v; want an empty, non-nil section", err, f)
	}
}

// Issue 10.3: the examples that carry a jwt section still load, and it is
// read: the config files here and the YAML that internal/bench/load.sh
// writes.
func TestExamplesJWTSection(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ file, issuer string }{
		{"production.example.yaml", "https://auth.acme.example"},
		{"demo.yaml", "safeclose-webapp"},
	} {
		f, err := Load(tt.file)
		if err != nil {
			t.Fatalf("Load(%s) = %v", tt.file, err)
		}
		if err := f.Validate(); err != nil {
			t.Errorf("%s: Validate() = %v", tt.file, err)
		}
		var found bool
		for _, tn := range f.Tenants {
			if p := tn.Auth.Plugin; p != nil && p.JWT != nil && p.JWT.Issuer == tt.issuer {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no auth plugin with jwt.issuer %q", tt.file, tt.issuer)
		}
	}
	sh, err := os.ReadFile("../internal/bench/load.sh")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)<<YAML\n(.*?)\nYAML\n`).FindSubmatch(sh)
	if m == nil {
		t.Fatal("load.sh: no <<YAML heredoc")
	}
	// Fill the shell's variables with values of the right shape.
	y := regexp.MustCompile(`\$\{PORT\[[a-z-]+\]\}`).ReplaceAllString(string(m[1]), "18090")
	// The longer names first: the comparisons go in argument order.
	y = strings.NewReplacer("$RUN", "/tmp/run", "$WASM_AS", "/tmp/jwtauth-as.wasm", "$SUM_AS", strings.Repeat("2", 64),
		"$WASM", "/tmp/jwtauth.wasm", "$SUM", strings.Repeat("0", 64),
		"$CACHE_TTL", "30s", "$TOKEN_SHA", strings.Repeat("1", 64)).Replace(y)
	f, err := Decode(strings.NewReader(y))
	if err != nil {
		t.Fatalf("load.sh YAML: Decode = %v\n%s", err, y)
	}
	if err := f.Validate(); err != nil {
		t.Errorf("load.sh YAML: Validate() = %v", err)
	}
	if j := f.Tenants[0].Auth.Plugin.JWT; j == nil || j.Issuer != "perf-anchors" || j.Audience != "edge-proxy" {
		t.Errorf("load.sh YAML: jwt = %+v, want perf-anchors/edge-proxy", j)
	}
}

// secretsTenant is a valid tenant whose auth plugin holds secrets (a flow
// mapping of names to refs) and caps, with jwtYAML under config.jwt ("" for
// no jwt section).
func secretsTenant(caps, secrets, jwtYAML string) string {
	jwt := ""
	if jwtYAML != "" {
		jwt = ", jwt: " + jwtYAML
	}
	return pluginTenant([]string{"capabilities: " + caps, "secrets: " + secrets, "config: {cookie: session" + jwt + "}"}, "")
}

// A token's kid picks among every secret jwt.secrets allows, so a plugin
// that can verify JWTs (crypto) and holds several secrets must name the
// session keys; [] names none and stays an empty list, not "every secret".
func TestJWTSecretsRequiredWithSeveral(t *testing.T) {
	t.Parallel()
	two := "{main: env:A, partner: env:B}"
	tests := []struct {
		name, caps, secrets, jwt string
		validErr                 []string // Validate fails with all of these; nil: valid
		wantNamed                []string // JWT.Secrets after Decode (nil: unset)
	}{
		{name: "two secrets, none named", caps: "[config, crypto]", secrets: two, jwt: "{issuer: i}",
			validErr: []string{"tenants[0].auth.plugin.config.jwt.secrets", "required", "main, partner"}},
		{name: "two secrets, no jwt section", caps: "[crypto]", secrets: two,
			validErr: []string{"tenants[0].auth.plugin.config.jwt.secrets", "required"}},
		{name: "two secrets, one named", caps: "[crypto]", secrets: two, jwt: "{secrets: [main]}", wantNamed: []string{"main"}},
		{name: "two secrets, none verify", caps: "[crypto]", secrets: two, jwt: "{secrets: []}", wantNamed: []string{}},
		{name: "two secrets without crypto", caps: "[config]", secrets: two},
		{name: "one secret", caps: "[crypto]", secrets: "{main: env:A}"},
		{name: "a name it does not hold", caps: "[crypto]", secrets: two, jwt: "{secrets: [main, nope]}",
			validErr: []string{"tenants[0].auth.plugin.config.jwt.secrets[1]", `"nope"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := Decode(strings.NewReader(secretsTenant(tt.caps, tt.secrets, tt.jwt)))
			if err != nil {
				t.Fatalf("Decode = %v", err)
			}
			verr := f.Validate()
			if tt.validErr == nil && verr != nil {
				t.Fatalf("Validate = %v, want valid", verr)
			}
			for _, w := range tt.validErr {
				if verr == nil || !strings.Contains(verr.Error(), w) {
					t.Errorf("Validate = %v, want an error containing %q", verr, w)
				}
			}
			if tt.wantNamed == nil {
				return
			}
			j := f.Tenants[0].Auth.Plugin.JWT
			if j == nil || j.Secrets == nil || !slices.Equal(j.Secrets, tt.wantNamed) {
				t.Errorf("jwt.secrets = %#v, want %#v (an empty list must stay non-nil)", j, tt.wantNamed)
			}
		})
	}
}
