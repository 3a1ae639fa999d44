package store

import (
	"container/heap"
	"slices"
	"sync"
	"time"
)

// qindex is the in-memory view of the webhook queue (the q/ records): which
// entries exist, which are due, and which are leased. It makes leasing cost
// the same with ten queued entries or a million (issue 12): the next due
// entry of a tenant is the top of a heap, not the end of a scan.
//
// Leases live here only; the durable record changes on completion, retry,
// dead-letter and replay. A lease is soft state: Badger admits one process
// per data directory, so a lease can only be held by this process, and after
// a crash every entry is leasable again, which is what an expired lease would
// have given. See RATIONALE.md "Why leases live in memory".
type qindex struct {
	mu      sync.Mutex
	ents    map[string]*qent
	tenants map[string]*readyHeap
	names   []string // sorted keys of tenants
	wait    waitHeap // not due yet, or leased: looked at again at their time
	// cached is the bytes held by qent.fresh, at most max (freshMax).
	cached, max int
	// epoch counts the moments a record may change (begin and end of an
	// outcome); qent.changed is the epoch of its entry's last one. A copy
	// read ahead (aheadStart, keepAhead) is kept only for an entry that
	// has not changed since the epoch the read began at.
	epoch uint64
	// aheadTo is the last id read ahead: a lease of an entry before it
	// does not read ahead again (that run was read, its copies kept or
	// taken), so leases of the same few entries over and over (released,
	// retried) never pay for a read-ahead each.
	aheadTo string
}

// freshMax bounds the entries kept in memory between Enqueue and their
// first lease, so leasing a fresh entry neither reads nor decodes its
// record (issue 12) while a large backlog costs no more memory than before.
const freshMax = 8 << 20

// qent is one queued entry's index record.
type qent struct {
	id, tenant string
	next       int64  // NextAt, unix nanos
	until      int64  // lease end, unix nanos, while leased
	token      uint64 // the last lease's token; 0 once released
	leased     bool
	ready      bool   // in its tenant's ready heap
	finishing  bool   // an outcome is being written (Complete, Retry, DeadLetter)
	changed    uint64 // qindex.epoch at the last begin or end of an outcome
	// fresh is the entry exactly as Enqueue committed it, until its first
	// lease takes it; nil when not kept (freshMax) or once taken.
	fresh *Entry
}

func freshSize(e *Entry) int {
	n := 256 + len(e.Body)
	for _, h := range e.Headers {
		n += len(h.Name) + len(h.Value)
	}
	return n
}

// drop forgets q's fresh entry.
func (qi *qindex) drop(q *qent) {
	if q.fresh != nil {
		qi.cached -= freshSize(q.fresh)
		q.fresh = nil
	}
}

func newQindex() *qindex {
	return &qindex{ents: map[string]*qent{}, tenants: map[string]*readyHeap{}, max: freshMax}
}

func (qi *qindex) len() int {
	qi.mu.Lock()
	defer qi.mu.Unlock()
	return len(qi.ents)
}

// add records a committed entry; one due at now goes straight to its
// tenant's ready heap.
func (qi *qindex) add(id, tenant string, next, now time.Time) {
	qi.addFresh(id, tenant, next, now, nil)
}

// addFresh is add that may keep fresh, the committed entry, for its first
// lease (see freshMax). fresh must not be changed afterwards.
func (qi *qindex) addFresh(id, tenant string, next, now time.Time, fresh *Entry) {
	qi.mu.Lock()
	defer qi.mu.Unlock()
	if _, ok := qi.ents[id]; ok {
		return
	}
	if _, ok := qi.tenants[tenant]; !ok {
		qi.tenants[tenant] = &readyHeap{}
		i, _ := slices.BinarySearch(qi.names, tenant)
		qi.names = slices.Insert(qi.names, i, tenant)
	}
	q := &qent{id: id, tenant: tenant, next: next.UnixNano()}
	if fresh != nil && qi.cached+freshSize(fresh) <= qi.max {
		q.fresh = fresh
		qi.cached += freshSize(fresh)
	}
	qi.ents[id] = q
	if !next.After(now) {
		q.ready = true
		heap.Push(qi.tenants[tenant], q)
		return
	}
	heap.Push(&qi.wait, waitItem{at: q.next, q: q})
}

// started reports whether id's delivery has begun: it is leased (a lease
// that ran out does not count) or its outcome is being written. An entry
// not in the index has not started.
func (qi *qindex) started(id string, now int64) bool {
	qi.mu.Lock()
	defer qi.mu.Unlock()
	q := qi.ents[id]
	return q != nil && (q.finishing || q.leased && q.until > now)
}

// remove forgets an entry (completed, dead-lettered or moved aside).
func (qi *qindex) remove(id string) {
	qi.mu.Lock()
	defer qi.mu.Unlock()
	if q := qi.ents[id]; q != nil {
		qi.drop(q)
	}
	delete(qi.ents, id)
}

// promote moves entries whose time has come into their tenant's ready heap.
func (qi *qindex) promote(now int64) {
	for len(qi.wait) > 0 && qi.wait[0].at <= now {
		q := heap.Pop(&qi.wait).(waitItem).q
		if qi.ents[q.id] != q || q.ready || q.finishing {
			continue
		}
		if q.leased {
			if q.until > now {
				continue // extended: a later item stands for it
			}
			q.leased = false // expired; the token stays valid until re-leased
		}
		if q.next > now {
			continue // retried later: a later item stands for it
		}
		q.ready = true
		heap.Push(qi.tenants[q.tenant], q)
	}
}

// top returns tenant's oldest ready entry, dropping stale heap items.
func (qi *qindex) top(h *readyHeap, now int64) *qent {
	for h.Len() > 0 {
		q := (*h)[0]
		if qi.ents[q.id] == q && !q.finishing && !q.leased && q.next <= now {
			return q
		}
		heap.Pop(h)
		q.ready = false
	}
	return nil
}

// pick leases the next entry in tenant turns (see LeaseNext) until `until`,
// and hands over its fresh entry if it still has one (nil otherwise).
func (qi *qindex) pick(now, until int64, token uint64, after string, allow func(string) bool) (*qent, *Entry) {
	qi.mu.Lock()
	defer qi.mu.Unlock()
	qi.promote(now)
	start, _ := slices.BinarySearch(qi.names, after)
	if start < len(qi.names) && qi.names[start] == after {
		start++
	}
	for k := range len(qi.names) {
		name := qi.names[(start+k)%len(qi.names)]
		h := qi.tenants[name]
		q := qi.top(h, now)
		if q == nil || (allow != nil && !allow(name)) {
			continue
		}
		heap.Pop(h)
		q.ready, q.leased, q.until, q.token = false, true, until, token
		heap.Push(&qi.wait, waitItem{at: until, q: q})
		fresh := q.fresh
		qi.drop(q)
		return q, fresh
	}
	return nil, nil
}

// held returns id's entry if lease is its current token.
func (qi *qindex) held(id string, lease uint64) *qent {
	q := qi.ents[id]
	if q == nil || lease == 0 || q.token != lease || q.finishing {
		return nil
	}
	return q
}

// extend renews a held lease until `until`.
func (qi *qindex) extend(id string, lease uint64, until int64) bool {
	qi.mu.Lock()
	defer qi.mu.Unlock()
	q := qi.held(id, lease)
	if q == nil {
		return false
	}
	q.leased, q.until = true, until
	heap.Push(&qi.wait, waitItem{at: until, q: q})
	return true
}

// release gives a held lease back: the entry is due again at once.
func (qi *qindex) release(id string, lease uint64) bool {
	qi.mu.Lock()
	defer qi.mu.Unlock()
	q := qi.held(id, lease)
	if q == nil {
		return false
	}
	q.leased, q.token = false, 0
	heap.Push(&qi.wait, waitItem{at: 0, q: q})
	return true
}

// begin marks a held entry as finishing, so nobody leases it while its
// outcome is written; end must follow.
func (qi *qindex) begin(id string, lease uint64) *qent {
	qi.mu.Lock()
	defer qi.mu.Unlock()
	q := qi.held(id, lease)
	if q != nil {
		qi.epoch++
		q.finishing, q.changed = true, qi.epoch
	}
	return q
}

// end records the outcome begun by begin: gone (completed, dead-lettered),
// due again at next (retried), or, when the write failed (ok false), as it
// was.
func (qi *qindex) end(q *qent, ok, gone bool, next time.Time) {
	qi.mu.Lock()
	defer qi.mu.Unlock()
	qi.epoch++
	q.finishing, q.changed = false, qi.epoch
	qi.drop(q) // the record may change from here: never hand out a copy
	switch {
	case ok && gone:
		if qi.ents[q.id] == q {
			delete(qi.ents, q.id)
		}
		return
	case ok:
		q.next, q.leased, q.token = next.UnixNano(), false, 0
		heap.Push(&qi.wait, waitItem{at: q.next, q: q})
	default:
		heap.Push(&qi.wait, waitItem{at: 0, q: q}) // looked at again now: leasable once its lease ends
		if q.leased {
			heap.Push(&qi.wait, waitItem{at: q.until, q: q})
		}
	}
}

// aheadMax is how many records past a read one a lease reads ahead, and
// aheadShare the part of freshMax copies read ahead may fill: the rest is
// kept for entries as Enqueue commits them.
const (
	aheadMax   = 64
	aheadShare = 2 // 1/2
)

// aheadStart tells whether to read ahead of id, leased without a copy:
// there is room for copies, and id is past the last run read. epoch is to
// be passed to keepAhead.
func (qi *qindex) aheadStart(id string) (epoch uint64, ok bool) {
	qi.mu.Lock()
	defer qi.mu.Unlock()
	return qi.epoch, qi.cached < qi.max/aheadShare && id >= qi.aheadTo
}

// wantsAhead tells whether a copy of id's record read ahead would be kept:
// it is queued, without a copy, and not leased (a cheap check before the
// record is decoded; keepAhead decides).
func (qi *qindex) wantsAhead(id []byte) bool {
	qi.mu.Lock()
	defer qi.mu.Unlock()
	q := qi.ents[string(id)]
	return q != nil && q.fresh == nil && !q.leased && !q.finishing
}

// keepAhead keeps es, records read ahead of their lease (up to id to) in
// a transaction begun after aheadStart returned epoch, as their entries'
// fresh copies: those of entries still queued, due by now, neither leased
// nor finishing, not changed since epoch (so es holds what is committed),
// within the room read-ahead may fill. It returns how many it kept.
func (qi *qindex) keepAhead(epoch uint64, now int64, to string, es []*Entry) int {
	qi.mu.Lock()
	defer qi.mu.Unlock()
	qi.aheadTo = max(qi.aheadTo, to)
	kept := 0
	for _, e := range es {
		q := qi.ents[e.ID]
		if q == nil || q.fresh != nil || q.leased || q.finishing || q.changed > epoch || q.next > now || q.tenant != e.Tenant {
			continue
		}
		n := freshSize(e)
		if qi.cached+n > qi.max/aheadShare {
			break
		}
		q.fresh = e
		qi.cached += n
		kept++
	}
	return kept
}

// readyHeap is one tenant's due entries, oldest id (so oldest received) first.
type readyHeap []*qent

func (h readyHeap) Len() int           { return len(h) }
func (h readyHeap) Less(i, j int) bool { return h[i].id < h[j].id }
func (h readyHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *readyHeap) Push(x any)        { *h = append(*h, x.(*qent)) }
func (h *readyHeap) Pop() any {
	old := *h
	q := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return q
}

type waitItem struct {
	at int64
	q  *qent
}

// waitHeap orders entries by the time they must be looked at again.
type waitHeap []waitItem

func (h waitHeap) Len() int { return len(h) }
func (h waitHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].q.id < h[j].q.id
}
func (h waitHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *waitHeap) Push(x any)   { *h = append(*h, x.(waitItem)) }
func (h *waitHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = waitItem{}
	*h = old[:len(old)-1]
	return w
}
