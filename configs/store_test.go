package configs

import (
	"strings"
	"testing"
)

// Issue 11.2: the store section, exactly as the issue gives it, and its
// validation by field path.
func TestStoreConfig(t *testing.T) {
	t.Parallel()
	f := decodeMinimal(t, "store:\n  backend: postgres\n  dsn: env:SAFECLOSE_PG_DSN\n  max_conns: 16\n")
	if err := f.Validate(); err != nil {
		t.Fatalf("Validate() = %v, want nil", err)
	}
	if f.Store != (Store{Backend: BackendPostgres, DSN: "env:SAFECLOSE_PG_DSN", MaxConns: 16}) {
		t.Fatalf("Store = %+v", f.Store)
	}
	if got := decodeMinimal(t, "").Store.Backend; got != BackendBadger {
		t.Fatalf("default backend = %q, want badger", got)
	}
	tests := []struct{ name, yaml, want string }{
		{"unknown backend", "store: {backend: mysql}\n", "store.backend: must be badger or postgres"},
		{"postgres without dsn", "store: {backend: postgres}\n", "store.dsn: required"},
		{"inline dsn", "store: {backend: postgres, dsn: 'postgres://u:pw@h/db'}\n", "store.dsn: must be"},
		{"dsn on badger", "store: {backend: badger, dsn: env:X}\n", "store.dsn: only for backend: postgres"},
		{"negative max_conns", "store: {backend: postgres, dsn: env:X, max_conns: -1}\n", "store.max_conns: must be in"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := decodeMinimal(t, tt.yaml).Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "pw@") {
				t.Fatalf("Validate() prints the DSN: %v", err)
			}
		})
	}
}
