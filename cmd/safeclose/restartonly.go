package main

import (
	"crypto/sha256"
	"reflect"
	"slices"
	"strings"

	"github.com/safeclose/safeclose/configs"
)

// restartOnly names, by their YAML paths, the settings that differ between
// the config serve started with and next but that a reload does not apply:
// a reload rebuilds the tenants and re-reads the certificates, while the
// listeners, the store, the keyring, the limits, the webhook pipeline, the
// emulator and the logging are set up once, at start. Without this a
// reload that changed, say, limits.max_body_bytes logged "config reloaded"
// and kept the old value (the third trust pass). Names only: values can be
// secret references.
func restartOnly(started, next *configs.File) []string {
	var out []string
	diffFields("", reflect.ValueOf(*started), reflect.ValueOf(*next), &out)
	return out
}

func diffFields(prefix string, a, b reflect.Value, out *[]string) {
	t := a.Type()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		path := prefix + name
		x, y := a.Field(i), b.Field(i)
		switch {
		case path == "tenants":
			continue // what a reload is for
		case path == "tls":
			// reloadCerts re-reads the certificates, applies min_version
			// and warns when the block comes or goes.
			if !x.IsNil() && !y.IsNil() && x.Elem().FieldByName("RedirectListen").String() != y.Elem().FieldByName("RedirectListen").String() {
				*out = append(*out, "tls.redirect_listen")
			}
		case x.Kind() == reflect.Struct:
			diffFields(path+".", x, y, out)
		case !reflect.DeepEqual(x.Interface(), y.Interface()):
			*out = append(*out, path)
		}
	}
}

// startSecrets are fingerprints of what the restart-only secret references
// (keys, store.dsn) named at start. A keyring file rewritten for a rotation
// keeps its reference, so restartOnly, which compares the config's text,
// does not see it; a reload compares these with what the same references
// name now and names the field, never the value (found by a review,
// 2026-12-08: a reload after a rotation's first step logged only "config
// reloaded" while the process kept sealing under the old primary).
type startSecrets map[string][sha256.Size]byte

// restartSecrets are the secret references read once, at start.
func restartSecrets(cfg *configs.File) map[string]configs.SecretRef {
	return map[string]configs.SecretRef{"keys": cfg.Keys, "store.dsn": cfg.Store.DSN}
}

// noteSecrets fingerprints cfg's restart-only secrets as they are now.
func noteSecrets(cfg *configs.File) startSecrets {
	out := startSecrets{}
	for name, ref := range restartSecrets(cfg) {
		out[name] = secretPrint(ref)
	}
	return out
}

// secretPrint is a SHA-256 of what ref names now, or of the reference
// itself when it does not resolve (a file gone or emptied).
func secretPrint(ref configs.SecretRef) [sha256.Size]byte {
	sec, err := ref.Resolve()
	if err != nil {
		return sha256.Sum256([]byte("unresolved\x00" + string(ref)))
	}
	return sha256.Sum256(append([]byte("value\x00"), sec.Reveal()...))
}

// changed names, sorted, the restart-only secrets whose reference is the
// same in next as at start but names other contents than it did then. (A
// changed reference is restartOnly's.)
func (p startSecrets) changed(started, next *configs.File) []string {
	var out []string
	now := restartSecrets(next)
	for name, ref := range restartSecrets(started) {
		if now[name] == ref && secretPrint(ref) != p[name] {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
