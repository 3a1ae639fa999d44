package plaidsim

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/plaid/plaid-go/v29/plaid"
)

// TestConcurrentClients hammers the emulator (run under -race): 16
// goroutines × 20 iterations of sandbox/public_token/create → exchange →
// item/get, all succeeding with distinct item ids and access tokens.
func TestConcurrentClients(t *testing.T) {
	t.Parallel()
	const workers, iters = 16, 20
	e := newEnv(t, Options{})
	rcv := newReceiver(t, nil)
	type result struct {
		itemID, accessToken string
		err                 error
	}
	results := make(chan result, workers*iters)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for i := range iters {
				r := func() result {
					pt, err := e.newPublicToken(ctx, rcv.url, transactions())
					if err != nil {
						return result{err: fmt.Errorf("create: %w", err)}
					}
					ex, _, err := e.api.ItemPublicTokenExchange(ctx).ItemPublicTokenExchangeRequest(*plaid.NewItemPublicTokenExchangeRequest(pt)).Execute()
					if err != nil {
						return result{err: fmt.Errorf("exchange: %w", err)}
					}
					g, _, err := e.api.ItemGet(ctx).ItemGetRequest(*plaid.NewItemGetRequest(ex.GetAccessToken())).Execute()
					if err != nil {
						return result{err: fmt.Errorf("item/get: %w", err)}
					}
					if g.Item.GetItemId() != ex.GetItemId() || g.Item.GetInstitutionId() != testInst || g.Item.GetWebhook() != rcv.url {
						return result{err: fmt.Errorf("item/get = %s %s, exchange said %s", g.Item.GetItemId(), g.Item.GetInstitutionId(), ex.GetItemId())}
					}
					if i%5 == 0 { // mix in webhook traffic and signing
						if _, _, err := e.api.SandboxItemFireWebhook(ctx).SandboxItemFireWebhookRequest(*plaid.NewSandboxItemFireWebhookRequest(ex.GetAccessToken(), "DEFAULT_UPDATE")).Execute(); err != nil {
							return result{err: fmt.Errorf("fire_webhook: %w", err)}
						}
					}
					return result{itemID: ex.GetItemId(), accessToken: ex.GetAccessToken()}
				}()
				if r.err != nil {
					r.err = fmt.Errorf("worker %d iteration %d: %w", w, i, r.err)
				}
				results <- r
			}
		}()
	}
	wg.Wait()
	close(results)
	items, tokens := map[string]bool{}, map[string]bool{}
	for r := range results {
		if r.err != nil {
			t.Error(r.err)
			continue
		}
		if items[r.itemID] || tokens[r.accessToken] {
			t.Errorf("duplicate item %s / token %s", r.itemID, r.accessToken)
		}
		items[r.itemID], tokens[r.accessToken] = true, true
	}
	if len(items) != workers*iters || len(tokens) != workers*iters {
		t.Errorf("%d distinct items, %d distinct tokens; want %d", len(items), len(tokens), workers*iters)
	}
	want := workers * ((iters + 4) / 5)
	rcv.waitN(t, want)
}

// transcript runs a fixed call sequence against a fresh emulator and returns
// every response body it wrote, plus the item ids it created.
func transcript(t *testing.T, seed int64, now func() time.Time) ([][]byte, []string) {
	t.Helper()
	ctx := context.Background()
	e := newEnv(t, Options{Seed: seed, Now: now})
	var ids []string
	for range 3 {
		_, id := e.linkItem(t, "")
		ids = append(ids, id)
	}
	lr := linkReq("u")
	lr.SetProducts(transactions())
	lt, _, err := e.api.LinkTokenCreate(ctx).LinkTokenCreateRequest(*lr).Execute()
	if err != nil {
		t.Fatal(err)
	}
	pt, err := e.sim.CompleteLink(lt.GetLinkToken(), "ins_3", "user_good")
	if err != nil {
		t.Fatal(err)
	}
	ex, _, err := e.api.ItemPublicTokenExchange(ctx).ItemPublicTokenExchangeRequest(*plaid.NewItemPublicTokenExchangeRequest(pt)).Execute()
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, ex.GetItemId())
	if _, _, err := e.api.ItemGet(ctx).ItemGetRequest(*plaid.NewItemGetRequest(ex.GetAccessToken())).Execute(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.api.LinkTokenGet(ctx).LinkTokenGetRequest(*plaid.NewLinkTokenGetRequest(lt.GetLinkToken())).Execute(); err != nil {
		t.Fatal(err)
	}
	kid := e.currentKid(t)
	if _, _, err := e.api.WebhookVerificationKeyGet(ctx).WebhookVerificationKeyGetRequest(*plaid.NewWebhookVerificationKeyGetRequest(kid)).Execute(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sim.RotateKey(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.api.WebhookVerificationKeyGet(ctx).WebhookVerificationKeyGetRequest(*plaid.NewWebhookVerificationKeyGetRequest(e.currentKid(t))).Execute(); err != nil {
		t.Fatal(err)
	}
	var bodies [][]byte
	for _, x := range e.wire.all() {
		bodies = append(bodies, x.Body)
	}
	return bodies, ids
}

// TestDeterministicSeed: two emulators with the same Seed and the same
// injected clock answer the same call sequence with identical bytes (item
// ids, tokens, request ids, signing keys); another seed differs.
func TestDeterministicSeed(t *testing.T) {
	t.Parallel()
	clk := newClock() // one frozen clock shared by the runs
	a, idsA := transcript(t, 42, clk.Now)
	b, idsB := transcript(t, 42, clk.Now)
	c, idsC := transcript(t, 43, clk.Now)
	if len(a) != len(b) || len(a) < 10 {
		t.Fatalf("transcripts have %d and %d responses", len(a), len(b))
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			t.Errorf("response %d differs between runs with the same seed:\n%s\n%s", i, a[i], b[i])
		}
	}
	if !slices.Equal(idsA, idsB) {
		t.Errorf("item ids differ: %v vs %v", idsA, idsB)
	}
	if slices.Equal(idsA, idsC) || bytes.Equal(a[len(a)-1], c[len(c)-1]) {
		t.Errorf("seeds 42 and 43 gave the same ids/keys: %v", idsC)
	}
	for _, id := range idsA {
		if !itemIDRE.MatchString(id) {
			t.Errorf("item id %q", id)
		}
	}
	// Unseeded emulators are random.
	_, r1 := transcript(t, 0, clk.Now)
	_, r2 := transcript(t, 0, clk.Now)
	if slices.Equal(r1, r2) {
		t.Errorf("unseeded emulators gave the same ids %v", r1)
	}
}

// TestStatePersists: with StatePath, items and keys survive restarts; with
// a Seed, a restarted emulator continues the seeded stream instead of
// starting it over (which made the second and third runs issue the same item
// id and access token, the later overwriting the earlier), exactly as an
// uninterrupted run would.
func TestStatePersists(t *testing.T) {
	t.Parallel()
	for _, seed := range []int64{0, 7} {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clk := newClock()
			path := filepath.Join(t.TempDir(), "plaidsim.json")
			hookURL := newReceiver(t, nil).url
			get := func(e *env, at string) plaid.Item {
				t.Helper()
				g, _, err := e.api.ItemGet(ctx).ItemGetRequest(*plaid.NewItemGetRequest(at)).Execute()
				if err != nil {
					t.Fatalf("item/get after restart: %v", err)
				}
				return g.Item
			}
			stop := func(e *env) {
				t.Helper()
				e.ts.Close()
				if err := e.sim.Close(); err != nil {
					t.Fatal(err)
				}
			}
			o := Options{Seed: seed, StatePath: path, Now: clk.Now}

			e1 := newEnv(t, o)
			at1, id1 := e1.linkItem(t, hookURL)
			kid1 := e1.currentKid(t)
			if _, _, err := e1.api.SandboxItemResetLogin(ctx).SandboxItemResetLoginRequest(*plaid.NewSandboxItemResetLoginRequest(at1)).Execute(); err != nil {
				t.Fatal(err)
			}
			stop(e1)

			e2 := newEnv(t, o)
			at2, id2 := e2.linkItem(t, "")
			if it := get(e2, at1); it.GetItemId() != id1 || it.Error.Get() == nil || it.GetWebhook() != hookURL {
				t.Errorf("first item after restart = %+v", it)
			}
			if k := e2.currentKid(t); k != kid1 {
				t.Errorf("signing key changed across restart: %s -> %s", kid1, k)
			}
			stop(e2)

			e3 := newEnv(t, o)
			at3, id3 := e3.linkItem(t, "")
			if id3 == id2 || id3 == id1 || at3 == at2 || at3 == at1 {
				t.Fatalf("third run re-issued an item id or token: %s %s", id3, at3)
			}
			if it := get(e3, at2); it.GetItemId() != id2 {
				t.Errorf("second item after restart = %s, want %s", it.GetItemId(), id2)
			}
			if it := get(e3, at1); it.GetItemId() != id1 {
				t.Errorf("first item after restart = %s, want %s", it.GetItemId(), id1)
			}
			if seed == 0 {
				return
			}
			// The same calls without restarts give the same items.
			u := newEnv(t, Options{Seed: seed, Now: clk.Now})
			uat1, uid1 := u.linkItem(t, hookURL)
			if _, _, err := u.api.SandboxItemResetLogin(ctx).SandboxItemResetLoginRequest(*plaid.NewSandboxItemResetLoginRequest(uat1)).Execute(); err != nil {
				t.Fatal(err)
			}
			_, uid2 := u.linkItem(t, "")
			get(u, uat1)
			uat3, uid3 := u.linkItem(t, "")
			if !slices.Equal([]string{uid1, uid2, uid3}, []string{id1, id2, id3}) || uat3 != at3 {
				t.Errorf("uninterrupted run gave %s %s %s; restarted runs %s %s %s", uid1, uid2, uid3, id1, id2, id3)
			}
		})
	}
}
