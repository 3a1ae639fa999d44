package proxy

import (
	"strconv"
	"sync"
	"testing"
	"time"
)

// One user's requests spend at most PlaidCallsPerUser Plaid calls a
// minute: Plaid limits each client_id (a tenant), so one user must not
// spend what the tenant's other users need. Over it, link-token and
// exchange answer 429 rate_limited with Retry-After, other users are not
// touched, and the budget comes back with time.
func TestPlaidCallsPerUserAreBounded(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := startEnv(t, envConfig{options: func(o *Options) { o.PlaidCallsPerUser = 3; o.Now = clock }})

	for range 3 {
		e.linkToken("t1.test", "alice-key", "")
	}
	r := e.do("POST", "t1.test", pathLinkToken, "alice-key", nil)
	if r.status != 429 || r.errCode(t) != "rate_limited" || r.hdr.Get("Retry-After") != "20" {
		t.Fatalf("a 4th link token in the minute: %d %s Retry-After=%q; want 429 rate_limited, Retry-After 20", r.status, r.body, r.hdr.Get("Retry-After"))
	}
	// An exchange without link_token would ask Plaid about each of alice's
	// three Link sessions: refused before any call.
	r = e.do("POST", "t1.test", pathExchange, "alice-key", e.exchangeBody("public-sandbox-00000000-0000-0000-0000-000000000000", ""))
	if r.status != 429 || r.errCode(t) != "rate_limited" {
		t.Fatalf("an exchange with the budget spent: %d %s; want 429 rate_limited", r.status, r.body)
	}
	if r := e.do("GET", "t1.test", pathStatus, "alice-key", nil); r.status != 200 {
		t.Fatalf("status with the budget spent: %d %s; want 200 (the stored state)", r.status, r.body)
	}
	e.linkToken("t1.test", "bob-key", "") // another user of the tenant

	mu.Lock()
	now = now.Add(20 * time.Second) // one call back
	mu.Unlock()
	e.linkToken("t1.test", "alice-key", "")
	if r := e.do("POST", "t1.test", pathLinkToken, "alice-key", nil); r.status != 429 {
		t.Fatalf("a second call 20 s later: %d, want 429", r.status)
	}
}

// The buckets of a tenant with many users stay bounded: full buckets are
// dropped, and what is left is still a bound.
func TestPlaidBudgetSweepsFullBuckets(t *testing.T) {
	t.Parallel()
	b := newPlaidBudget(60)
	now := time.Now()
	for i := range maxBudgets {
		b.allow("t", strconv.Itoa(i), now)
	}
	if !b.allow("t", "new", now.Add(2*time.Minute)) {
		t.Fatal("a new user was refused")
	}
	if n := len(b.tenants["t"].m); n != 1 {
		t.Fatalf("%d buckets kept after the sweep, want only the new one", n)
	}
	for range 60 {
		b.allow("t", "new", now.Add(2*time.Minute))
	}
	if b.allow("t", "new", now.Add(2*time.Minute)) {
		t.Fatal("the 61st call in a minute was allowed")
	}
}
