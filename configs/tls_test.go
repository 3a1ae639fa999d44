package configs

import (
	"strings"
	"testing"
)

const tlsTenant = `
tenants:
  - name: acme
    hosts: [api.acme.example, "*.apps.acme.example"]
    plaid: {env: sandbox, client_id: env:A, secret: env:B}
    auth: {api_keys: [{sha256: 0000000000000000000000000000000000000000000000000000000000000000, user: u}]}
    tls: {cert_file: /etc/safeclose/acme.crt, key_file: /etc/safeclose/acme.key}
`

// Issue 13.1: the tls blocks decode exactly as the issue shows them, and
// access_log / trust_request_id have their documented defaults.
func TestDecodeTLSBlocks(t *testing.T) {
	t.Parallel()
	f, err := Decode(strings.NewReader(`
tls:
  cert_file: /etc/safeclose/default.crt
  key_file: /etc/safeclose/default.key
  min_version: "1.3"
  redirect_listen: 0.0.0.0:8080
` + tlsTenant))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(); err != nil {
		t.Fatalf("Validate() = %v, want nil", err)
	}
	if f.TLS == nil || f.TLS.CertFile != "/etc/safeclose/default.crt" || f.TLS.MinVersion != "1.3" || f.TLS.RedirectListen != "0.0.0.0:8080" {
		t.Errorf("TLS = %+v", f.TLS)
	}
	if tt := f.Tenants[0].TLS; tt == nil || tt.CertFile != "/etc/safeclose/acme.crt" || tt.KeyFile != "/etc/safeclose/acme.key" {
		t.Errorf("tenants[0].TLS = %+v", tt)
	}
	if !f.AccessLog || f.TrustRequestID {
		t.Errorf("AccessLog, TrustRequestID = %v, %v; want true, false", f.AccessLog, f.TrustRequestID)
	}
	f, err = Decode(strings.NewReader("access_log: false\ntrust_request_id: true\n" + tlsTenant[1:]))
	if err != nil {
		t.Fatal(err)
	}
	if f.AccessLog || !f.TrustRequestID || f.TLS != nil {
		t.Errorf("AccessLog, TrustRequestID, TLS = %v, %v, %v", f.AccessLog, f.TrustRequestID, f.TLS)
	}
}

func TestValidateTLS(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml string
		want       []string // field paths in the error; none: valid
	}{
		{"missing files", "tls: {min_version: \"1.1\", redirect_listen: nope}\n", []string{
			"tls.cert_file: required", "tls.key_file: required", "tls.min_version", "tls.redirect_listen",
		}},
		{"redirect equals listen", "listen: 0.0.0.0:8443\ntls: {cert_file: a, key_file: b, redirect_listen: 0.0.0.0:8443}\n", []string{"tls.redirect_listen: must differ"}},
		{"tenant tls without default", "", []string{"tenants[0].tls: needs the top-level tls"}},
		{"tenant tls without key", "tls: {cert_file: a, key_file: b}\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := Decode(strings.NewReader(tt.yaml + tlsTenant[1:]))
			if err != nil {
				t.Fatal(err)
			}
			if tt.name == "tenant tls without key" {
				f.Tenants[0].TLS.KeyFile = ""
				tt.want = []string{"tenants[0].tls.key_file: required"}
			}
			err = f.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestValidateWildcardHosts(t *testing.T) {
	t.Parallel()
	for _, h := range []string{"*", "*.com", "a.*.example", "**.example", "x*.example"} {
		f, err := Decode(strings.NewReader(strings.Replace(tlsTenant[1:], `"*.apps.acme.example"`, `"`+h+`"`, 1)))
		if err != nil {
			t.Fatal(err)
		}
		f.Tenants[0].TLS = nil
		if err := f.Validate(); err == nil || !strings.Contains(err.Error(), "tenants[0].hosts[1]") {
			t.Errorf("Validate(host %q) = %v, want a tenants[0].hosts[1] error", h, err)
		}
	}
}
