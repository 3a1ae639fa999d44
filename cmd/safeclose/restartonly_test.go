package main

import (
	"slices"
	"testing"

	"github.com/safeclose/safeclose/configs"
)

// A reload applies tenants and certificates only; every other setting that
// changed is named, so the operator is told it waits for a restart. Names,
// never values: keys and store.dsn are secret references.
func TestRestartOnlyNamesWhatAReloadDoesNotApply(t *testing.T) {
	t.Parallel()
	started := configs.Default()
	started.TLS = &configs.TLS{CertFile: "a.pem", KeyFile: "a.key"}
	started.Tenants = []configs.Tenant{{Name: "a", Hosts: []string{"a.test"}}}

	same := started
	same.TLS = &configs.TLS{CertFile: "b.pem", KeyFile: "b.key", MinVersion: "1.3"} // reloadCerts applies these
	same.Tenants = []configs.Tenant{{Name: "b", Hosts: []string{"b.test"}}}         // what a reload is for
	if got := restartOnly(&started, &same); len(got) != 0 {
		t.Fatalf("tenant and certificate changes reported as restart-only: %v", got)
	}

	next := same
	next.Limits.ReadTimeout = configs.Duration(5e9)
	next.Limits.MaxBodyBytes = 1 << 20
	next.Webhooks.Workers = 2
	next.Keys = "env:OTHER_KEYS"
	next.Store.DSN = "env:OTHER_DSN"
	next.AccessLog = !started.AccessLog
	next.TLS = &configs.TLS{CertFile: "b.pem", KeyFile: "b.key", RedirectListen: "127.0.0.1:8081"}
	got := restartOnly(&started, &next)
	want := []string{"keys", "store.dsn", "access_log", "limits.max_body_bytes", "limits.read_timeout", "webhooks.workers", "tls.redirect_listen"}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("restartOnly = %v, want %v", got, want)
	}
}
