package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/safeclose/safeclose/configs"
	"github.com/safeclose/safeclose/hostabi"
	"github.com/safeclose/safeclose/proxy"
)

// A tenant set is what serves: one built per configured tenant. The rules
// (README "Configuration", RATIONALE.md "Why a broken tenant does not stop
// the others"):
//   - at start, a tenant that cannot be built is unavailable (503
//     tenant_unavailable, on /readyz and in the log) and the others serve;
//     if none can be built, start fails;
//   - on reload, a tenant whose new config cannot be built keeps its previous
//     working build (marked ReloadRefused on /readyz); a tenant that had none
//     becomes unavailable; if no tenant would serve, the reload is refused.

// startSet checks the first build: at least one tenant must serve.
func startSet(set []*built, log *slog.Logger) error {
	var errs []error
	healthy := 0
	for _, bt := range set {
		if bt.tenant.Unavailable == nil {
			healthy++
			continue
		}
		errs = append(errs, bt.err)
		logUnavailable(log, bt)
	}
	if healthy == 0 {
		closeSet(set)
		return fmt.Errorf("no tenant could be built:\n%w", errors.Join(errs...))
	}
	return nil
}

func logUnavailable(log *slog.Logger, bt *built) {
	u := bt.tenant.Unavailable
	log.Error("tenant unavailable: its requests fail closed (503 tenant_unavailable) until a reload builds it",
		"tenant", bt.tenant.Name, "reason", u.Reason, "field", u.Field, "err", bt.err)
}

// proxyTenants lists the set's tenants for the proxy.
func proxyTenants(set []*built) []proxy.Tenant {
	ts := make([]proxy.Tenant, len(set))
	for i, bt := range set {
		ts[i] = bt.tenant
	}
	return ts
}

func setPlugins(set []*built) []*hostabi.Plugin {
	var ps []*hostabi.Plugin
	for _, bt := range set {
		ps = append(ps, bt.plugins...)
	}
	return ps
}

func closeSet(set []*built) { closePlugins(setPlugins(set)) }

// mergeReload combines a new build with the serving set: a tenant whose new
// build failed keeps its previous working build. It returns the set to serve,
// the old builds kept (their plugins stay open) and the fresh builds (whose
// plugins must be closed if the reload is refused).
func mergeReload(cur, next []*built, log *slog.Logger) (merged []*built, kept map[*built]bool, fresh []*built) {
	old := make(map[string]*built, len(cur))
	for _, bt := range cur {
		old[bt.tenant.Name] = bt
	}
	kept = map[*built]bool{}
	merged = make([]*built, len(next))
	for i, nb := range next {
		merged[i] = nb
		if nb.tenant.Unavailable == nil {
			fresh = append(fresh, nb)
			continue
		}
		ob := old[nb.tenant.Name]
		if ob == nil || ob.tenant.Unavailable != nil {
			logUnavailable(log, nb)
			continue
		}
		k := *ob // shares ob's plugins
		k.tenant.ReloadRefused = nb.tenant.Unavailable
		merged[i], kept[ob] = &k, true
		log.Error("reload refused for this tenant: its new config failed; it keeps serving its previous config",
			"tenant", nb.tenant.Name, "reason", nb.tenant.Unavailable.Reason, "field", nb.tenant.Unavailable.Field, "err", nb.err)
	}
	return merged, kept, fresh
}

// reload loads the config at path, builds its tenants and swaps them in.
// Settings that apply only at a restart are named in a warning, secrets
// whose files changed since start (secrets) among them.
// A config that does not load or validate is refused as a whole and the
// serving set stays; otherwise see mergeReload.
func reload(ctx context.Context, path string, started *configs.File, secrets startSecrets, b *builder, srv *proxy.Server, cur []*built, log *slog.Logger) []*built {
	cfg, err := loadConfig(path)
	if err != nil {
		log.Error("reload refused: config invalid; the old config keeps serving", "err", err)
		return cur
	}
	if fields := append(restartOnly(started, cfg), secrets.changed(started, cfg)...); len(fields) > 0 {
		log.Warn("reload: these settings apply only at the next restart; their values from the start keep serving", "fields", fields)
	}
	next, kept, fresh := mergeReload(cur, b.tenants(ctx, cfg), log)
	serving := 0
	for _, bt := range next {
		if bt.tenant.Unavailable == nil {
			serving++
		}
	}
	if serving == 0 {
		closeSet(fresh)
		log.Error("reload refused: no tenant of the new config could be built; the old config keeps serving")
		return cur
	}
	if err := srv.Reload(proxyTenants(next)); err != nil {
		closeSet(fresh)
		log.Error("reload refused; the old config keeps serving", "err", err)
		return cur
	}
	var retire []*built
	for _, ob := range cur {
		if !kept[ob] {
			retire = append(retire, ob)
		}
	}
	grace := srv.ReloadGrace()
	go func() { // requests and webhook events that picked the old table call its plugins first
		time.Sleep(grace)
		closeSet(retire)
	}()
	return next
}
