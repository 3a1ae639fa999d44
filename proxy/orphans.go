package proxy

import (
	"github.com/safeclose/safeclose/store"
)

// Orphans are Plaid items that may exist and be billed while no user holds
// them (RATIONALE.md "What an exchange cannot make safe"). They are
// reported, never guessed at: `safeclose items orphans`, the
// safeclose_orphan_items gauge and an error log line.

// resolve marks an exchange intent done.
func (s *Server) resolve(tn *tenant, in store.Intent) {
	if err := s.db.ResolveExchange(in.ID); err != nil {
		// A leftover intent is reported as a possible orphan at the next start.
		s.log.Warn("exchange intent not resolved", "tenant", tn.Name, "intent", in.ID, "err", err)
	}
}

// orphanIntent reports an exchange whose item may be orphaned.
func (s *Server) orphanIntent(in store.Intent, itemID, detail string) {
	if err := s.db.OrphanIntent(in, itemID, detail); err != nil {
		s.log.Error("orphan item not recorded", "tenant", in.Tenant, "intent", in.ID, "err", err)
	}
	s.log.Error("orphan item: Plaid may hold an item no user has; see `safeclose items orphans`",
		"tenant", in.Tenant, "user", in.User, "item_id", itemID, "intent", in.ID, "detail", detail)
	s.metrics.orphans.Inc()
}

// recordUnknownItem reports a webhook for an item no user holds.
func (s *Server) recordUnknownItem(st effectStore, tenant, itemID, event string) {
	if itemID == "" {
		return
	}
	fresh, err := st.RecordOrphan(store.Orphan{Kind: store.OrphanUnknownItem, Tenant: tenant, ItemID: itemID, Detail: "webhook " + event})
	if err != nil {
		s.log.Error("orphan item not recorded", "tenant", tenant, "item_id", itemID, "err", err)
		return
	}
	if fresh {
		s.log.Error("orphan item: a webhook names an item no user holds; see `safeclose items orphans`",
			"tenant", tenant, "item_id", itemID, "event", event)
		s.metrics.orphans.Inc()
	}
}

// reportPendingIntents turns the intents a previous process left (it died
// inside an exchange) into orphans. It runs in New, before any request.
// The gauge starts from the stored count and goes up as orphans are found.
func (s *Server) reportPendingIntents() {
	if os, err := s.db.Orphans(); err == nil {
		s.metrics.orphans.Set(float64(len(os)))
	}
	ins, err := s.db.PendingExchanges()
	if err != nil {
		s.log.Error("exchange intents unreadable", "err", err)
	}
	for _, in := range ins {
		s.orphanIntent(in, "", "the process stopped inside an exchange")
	}
}
