package proxy

import (
	"time"

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

// unknownItem is an item a webhook named that no user holds (issue 9.7).
type unknownItem struct{ tenant, itemID, event string }

func (u *unknownItem) orphan() store.Orphan {
	return store.Orphan{Kind: store.OrphanUnknownItem, Tenant: u.tenant, ItemID: u.itemID, Detail: "webhook " + u.event}
}

// recordUnknownItem records u's orphan in st and reports it.
func (s *Server) recordUnknownItem(st effectStore, u *unknownItem) {
	fresh, err := st.RecordOrphan(u.orphan())
	if err != nil {
		s.log.Error("orphan item not recorded", "tenant", u.tenant, "item_id", u.itemID, "err", err)
		return
	}
	s.reportUnknownItem(u, fresh)
}

// reportUnknownItem logs a webhook for an item nobody holds, once: an
// error with the orphan gauge when the orphan is new, else a line at info.
func (s *Server) reportUnknownItem(u *unknownItem, fresh bool) {
	if !fresh {
		s.log.Info("webhook for an item we do not hold", "tenant", u.tenant, "item_id", u.itemID, "event", u.event)
		return
	}
	s.log.Error("orphan item: a webhook names an item no user holds; see `safeclose items orphans`",
		"tenant", u.tenant, "item_id", u.itemID, "event", u.event)
	s.metrics.orphans.Inc()
}

// intentGrace is how old an unresolved exchange intent must be before a
// replica on a shared store (PostgreSQL) reports it, beside PlaidTimeout:
// another replica's exchange holds its intent for at most Plaid's timeout
// and a few store operations, and the replicas' clocks may disagree a
// little. With Badger one process owns the store, so every intent found at
// start was left by a process that died, and is reported at once.
const intentGrace = 10 * time.Minute

// intentSweep is how often a replica on a shared store looks for the
// intents of replicas that died.
const intentSweep = time.Minute

// sharedStore reports whether other processes use the store at the same
// time (PostgreSQL): an intent may then be another replica's exchange in
// progress.
func (s *Server) sharedStore() bool {
	sh, ok := s.db.(interface{ Shared() bool })
	return ok && sh.Shared()
}

// reportPendingIntents turns the intents a process left (it died inside an
// exchange) into orphans: at start every intent when the store is this
// process's alone, and on a shared store only those older than intentGrace
// (and PlaidTimeout), at start and every intentSweep (sweepIntents).
func (s *Server) reportPendingIntents(shared bool) {
	ins, err := s.db.PendingExchanges()
	if err != nil {
		s.log.Error("exchange intents unreadable", "err", err)
	}
	for _, in := range ins {
		if shared && s.now().Sub(in.CreatedAt) < intentGrace+s.opts.PlaidTimeout {
			continue // maybe another replica's exchange, under way
		}
		s.orphanIntent(in, "", "the process stopped inside an exchange")
	}
}

// sweepIntents runs reportPendingIntents every intentSweep until Shutdown,
// on a shared store: the intents of a replica that died are found by the
// others, not only when a replica starts.
func (s *Server) sweepIntents() {
	defer s.workers.Done()
	t := time.NewTicker(intentSweep)
	defer t.Stop()
	for {
		select {
		case <-s.base.Done():
			return
		case <-t.C:
			s.reportPendingIntents(true)
		}
	}
}
