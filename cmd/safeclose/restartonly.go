package main

import (
	"reflect"
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
