package proxy

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// plaidBudget bounds the Plaid calls one user's requests make
// (Options.PlaidCallsPerUser a minute, as a token bucket of that size).
// Every session route calls Plaid for the caller: a link token is one call,
// an exchange without link_token asks /link/token/get for each of the
// caller's recent Link sessions, the status route asks /item/get for each
// item needing re-login. Plaid's rate limits are per client_id, that is
// per tenant, so without a bound one user of an app (a script, a hostile
// customer) could spend the quota every other user of the tenant needs
// (the third trust pass). The buckets live in memory, per replica.
type plaidBudget struct {
	per   rate.Limit
	burst int

	mu      sync.Mutex
	tenants map[string]*userBudgets
}

// userBudgets is one tenant's buckets. At maxBudgets users, buckets that
// have refilled (the same as new ones) are dropped; if none has, all are.
type userBudgets struct {
	m map[string]*budget
}

type budget struct {
	lim  *rate.Limiter
	last time.Time
}

const maxBudgets = 100_000 // per tenant

func newPlaidBudget(perMinute int) *plaidBudget {
	return &plaidBudget{per: rate.Limit(float64(perMinute) / 60), burst: perMinute, tenants: map[string]*userBudgets{}}
}

// allow spends one call of user's budget at tenant, if there is one left.
func (b *plaidBudget) allow(tenant, user string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.tenants[tenant]
	if t == nil {
		t = &userBudgets{m: map[string]*budget{}}
		b.tenants[tenant] = t
	}
	u := t.m[user]
	if u == nil {
		if len(t.m) >= maxBudgets {
			b.sweep(t, now)
		}
		u = &budget{lim: rate.NewLimiter(b.per, b.burst)}
		t.m[user] = u
	}
	u.last = now
	return u.lim.AllowN(now, 1)
}

// sweep drops the buckets that are full again by now.
func (b *plaidBudget) sweep(t *userBudgets, now time.Time) {
	refill := time.Duration(float64(b.burst) / float64(b.per) * float64(time.Second))
	for k, u := range t.m {
		if now.Sub(u.last) > refill {
			delete(t.m, k)
		}
	}
	if len(t.m) >= maxBudgets {
		clear(t.m)
	}
}

// retryAfter is how long one call takes to come back, in whole seconds.
func (b *plaidBudget) retryAfter() int {
	return max(1, int(1/float64(b.per)+0.999))
}
