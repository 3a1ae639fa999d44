package proxy

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/valyala/fasthttp"

	"github.com/safeclose/safeclose/store"
)

// gateStore is the real store whose Enqueue waits until gate is closed.
type gateStore struct {
	*store.DB
	gate chan struct{}
}

func (g gateStore) Enqueue(ctx context.Context, e store.Entry) (string, bool, error) {
	<-g.gate
	return g.DB.Enqueue(ctx, e)
}

// postSigned posts one signed webhook to tenant t1 and returns the status;
// safe to call from any goroutine.
func postSigned(addr string, w signedWebhook) (int, error) {
	req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(res)
	req.SetRequestURI("http://" + addr + pathWebhook)
	req.Header.SetHost("t1.test")
	req.Header.SetMethod("POST")
	req.Header.Set("Plaid-Verification", w.jwt)
	req.SetBody(w.body)
	err := fasthttp.DoTimeout(req, res, 20*time.Second)
	return res.StatusCode(), err
}

// waitFor polls cond every 10 ms, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; !cond(); i++ {
		if i == 1000 {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The burst signal counts verified webhooks waiting for the store: not
// forged ones (an attacker cannot slow forwarding by sending them), and
// none once they are answered.
func TestIntakeWaitsCountsVerifiedWebhooksAtTheStore(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	open := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(open) // before Shutdown, which waits for the requests
	e := startEnv(t, envConfig{webhookOpt: WebhookOptions{Workers: -1}, store: func(t testing.TB, kr *store.Keyring) Store {
		db, err := store.Open(store.Options{Dir: t.TempDir(), Keyring: kr})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return gateStore{DB: db, gate: gate}
	}})
	ws := signWebhooks(t, e.sim, 3)
	post := func(w signedWebhook) (int, error) { return postSigned(e.addr, w) }
	type answer struct {
		code int
		err  error
	}
	answers := make(chan answer, len(ws))
	for _, w := range ws {
		go func() { c, err := post(w); answers <- answer{c, err} }()
	}
	waitFor(t, "3 webhooks waiting for the store", func() bool { return e.srv.intakeWaits.Load() == 3 })

	forged := ws[0]
	forged.body = append([]byte(nil), forged.body...)
	forged.body[len(forged.body)-2] ^= 1 // the body no longer matches its signed hash
	if code, err := post(forged); err != nil || code != fasthttp.StatusUnauthorized {
		t.Fatalf("forged webhook: %d %v, want 401", code, err)
	}
	if n := e.srv.intakeWaits.Load(); n != 3 {
		t.Fatalf("waiting webhooks after a forged one = %d, want 3 (forged ones never count)", n)
	}
	open()
	for range ws {
		if a := <-answers; a.err != nil || a.code != fasthttp.StatusOK {
			t.Fatalf("webhook: %d %v, want 200", a.code, a.err)
		}
	}
	if n := e.srv.intakeWaits.Load(); n != 0 {
		t.Fatalf("waiting webhooks once all are answered = %d, want 0", n)
	}
}

// While a burst waits for the store and the process is short of CPU,
// workers rest after each entry, yet forward every event (the floor);
// without a burst, with CPU to spare (a slow store: resting would speed
// nothing), or with pacing off, they never rest. The burst is simulated by
// the count the workers read, the CPU by what schedWatch would answer.
func TestWorkersRestWhileABurstWaits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		at         int
		burst      bool
		shortOfCPU bool
		wantRests  bool
	}{
		{"burst", 0, true, true, true},
		{"no burst", 0, false, true, false},
		{"burst, CPU to spare", 0, true, false, false},
		{"pacing off", -1, true, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rv, url := newDrainReceiver(t)
			logs := &lockedBuffer{}
			e := startEnv(t, envConfig{
				logTo:      logs,
				forward:    []Destination{{Name: "app", URL: url, Secret: []byte("0123456789abcdef0123456789abcdef")}},
				webhookOpt: WebhookOptions{Workers: 2, IntakeFirstAt: tc.at, shortOfCPU: func() bool { return tc.shortOfCPU }},
			})
			if tc.burst {
				e.srv.intakeWaits.Add(1000)
			}
			const n = 20
			postWebhooks(t, e.addr, signWebhooks(t, e.sim, n), 4)
			waitFor(t, fmt.Sprintf("%d forwards", n), func() bool { return rv.count() == n })
			rested := testutil.ToFloat64(e.srv.metrics.paced)
			if got := rested > 0; got != tc.wantRests {
				t.Fatalf("workers rested %vs over %d entries; want rests: %v", rested, n, tc.wantRests)
			}
			if tc.wantRests && rested > float64(n)*maxPace.Seconds() {
				t.Fatalf("workers rested %vs over %d entries, more than %v each", rested, n, maxPace)
			}
			// The operator is told, once a minute at most, not once a rest.
			said := 0
			for _, l := range logs.lines(t) {
				if strings.HasPrefix(fmt.Sprint(l["msg"]), "webhook burst: forwarding paced") {
					said++
				}
			}
			if want := map[bool]int{true: 1, false: 0}[tc.wantRests]; said != want {
				t.Fatalf("\"forwarding paced\" logged %d times over %d entries; want %d", said, n, want)
			}
		})
	}
}

// enqueuePanicStore is the real store whose Enqueue panics.
type enqueuePanicStore struct{ *store.DB }

func (enqueuePanicStore) Enqueue(context.Context, store.Entry) (string, bool, error) {
	panic("enqueue exploded")
}

// A store that panics while a webhook waits for it gives the count back:
// a count left high would pace the workers for the life of the process.
func TestIntakeWaitsGivenBackAfterAPanic(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envConfig{webhookOpt: WebhookOptions{Workers: -1}, store: func(t testing.TB, kr *store.Keyring) Store {
		db, err := store.Open(store.Options{Dir: t.TempDir(), Keyring: kr})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return enqueuePanicStore{DB: db}
	}})
	if code, err := postSigned(e.addr, signWebhooks(t, e.sim, 1)[0]); err != nil || code != fasthttp.StatusInternalServerError {
		t.Fatalf("webhook with a panicking store: %d %v, want 500", code, err)
	}
	if n := e.srv.intakeWaits.Load(); n != 0 {
		t.Fatalf("waiting webhooks after the panic = %d, want 0", n)
	}
}

// A worker's rest under a burst: 2n−1 times its entry's time for n
// workers (together about half of one worker's time), never past maxPace.
func TestPaceRest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n          int
		took, want time.Duration
	}{
		{1, time.Millisecond, time.Millisecond},
		{2, time.Millisecond, 3 * time.Millisecond},
		{8, 100 * time.Microsecond, 1500 * time.Microsecond},
		{8, 2 * time.Millisecond, maxPace},
		{1, time.Hour, maxPace},
	} {
		if got := paceRest(tc.n, tc.took); got != tc.want {
			t.Errorf("paceRest(%d, %v) = %v, want %v", tc.n, tc.took, got, tc.want)
		}
	}
}
