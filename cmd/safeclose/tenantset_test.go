package main

import (
	"errors"
	"log/slog"
	"testing"

	"github.com/safeclose/safeclose/proxy"
)

func healthy(name string) *built {
	return &built{tenant: proxy.Tenant{Name: name, Hosts: []string{name + ".test"}}}
}

func broken(name, reason string) *built {
	return &built{
		tenant: proxy.Tenant{Name: name, Hosts: []string{name + ".test"}, Unavailable: &proxy.Unavailability{Reason: reason, Field: "tenants[0].auth.plugin"}},
		err:    errors.New(reason),
	}
}

// Issue 9.15: on reload, a tenant whose new plugin fails keeps its previous
// working build (marked ReloadRefused); a tenant that had none stays
// unavailable; healthy new builds replace old ones.
func TestMergeReload(t *testing.T) {
	t.Parallel()
	oldA, oldB, oldC := healthy("a"), healthy("b"), broken("c", "plugin_missing")
	cur := []*built{oldA, oldB, oldC}
	newA, newB, newC, newD := healthy("a"), broken("b", "plugin_refused"), broken("c", "plugin_refused"), broken("d", "plugin_missing")
	merged, kept, fresh := mergeReload(cur, []*built{newA, newB, newC, newD}, slog.New(slog.DiscardHandler))
	if merged[0] != newA {
		t.Errorf("a: healthy new build not used")
	}
	if b := merged[1]; b.tenant.Unavailable != nil || b.tenant.ReloadRefused == nil || b.tenant.ReloadRefused.Reason != "plugin_refused" {
		t.Errorf("b = %+v, want the old working build marked ReloadRefused plugin_refused", b.tenant)
	}
	if oldB.tenant.ReloadRefused != nil {
		t.Errorf("the serving build of b was changed in place")
	}
	if merged[2] != newC || merged[3] != newD {
		t.Errorf("c, d: want the new unavailable builds (no previous working build)")
	}
	if !kept[oldB] || kept[oldA] || kept[oldC] || len(kept) != 1 {
		t.Errorf("kept = %v, want only b's old build", kept)
	}
	if len(fresh) != 1 || fresh[0] != newA {
		t.Errorf("fresh = %v, want only a's new build", fresh)
	}
}
