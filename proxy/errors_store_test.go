package proxy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/safeclose/safeclose/store"
)

// Issue 9.11, 9.12: the store's integrity and full-disk errors get their own
// statuses, and the body never carries the internal text (paths, ids).
func TestClassifyStoreErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"corrupt", fmt.Errorf("store: item i-secret-1: %w", store.ErrCorrupt), 500, "store_corrupt"},
		{"disk full", fmt.Errorf("store: enqueue: %w: 12 bytes free in /var/lib/x", store.ErrUnavailable), 503, "store_unavailable"},
		{"disk full via intake", fmt.Errorf("%w: enqueue webhook: %w", ErrStoreDown, store.ErrUnavailable), 503, "store_unavailable"},
		{"no key", fmt.Errorf("store: item i-secret-1: %w", store.ErrNoKey), 503, "sealing_key_unavailable"},
		{"wrong key", fmt.Errorf("store: item i-secret-1: %w", store.ErrKeyMismatch), 503, "sealing_key_unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st, d := classify(tt.err)
			if st != tt.status || d.Code != tt.code {
				t.Errorf("classify(%v) = %d %s, want %d %s", tt.err, st, d.Code, tt.status, tt.code)
			}
			if strings.Contains(d.Message, "i-secret-1") || strings.Contains(d.Message, "/var/lib") {
				t.Errorf("message leaks internal text: %q", d.Message)
			}
		})
	}
}
