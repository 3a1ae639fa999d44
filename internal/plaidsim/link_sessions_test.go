package plaidsim

import (
	"context"
	"testing"
	"time"

	plaid "github.com/plaid/plaid-go/v29/plaid"
)

// Issue 9.6: /link/token/get reports the public tokens a link token
// produced (link_sessions[].results.item_add_results), so an app can tell
// which user's Link session a public token came from.
func TestLinkTokenGetReportsLinkSessions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, Options{})
	sessions := func(tok string) []plaid.LinkTokenGetSessionsResponse {
		t.Helper()
		g, _, err := e.api.LinkTokenGet(ctx).LinkTokenGetRequest(*plaid.NewLinkTokenGetRequest(tok)).Execute()
		if err != nil {
			t.Fatalf("link/token/get: %v", err)
		}
		return g.GetLinkSessions()
	}
	publicTokens := func(ss []plaid.LinkTokenGetSessionsResponse) []string {
		var out []string
		for _, s := range ss {
			r := s.GetResults()
			for _, a := range r.GetItemAddResults() {
				out = append(out, a.GetPublicToken())
			}
		}
		return out
	}

	req := linkReq("user-1")
	req.SetProducts(transactions())
	lt, _, err := e.api.LinkTokenCreate(ctx).LinkTokenCreateRequest(*req).Execute()
	if err != nil {
		t.Fatal(err)
	}
	if ss := sessions(lt.GetLinkToken()); len(ss) != 0 {
		t.Fatalf("fresh link token has sessions %v", ss)
	}
	pt, err := e.sim.CompleteLink(lt.GetLinkToken(), "ins_109508", "")
	if err != nil {
		t.Fatal(err)
	}
	ss := sessions(lt.GetLinkToken())
	if got := publicTokens(ss); len(got) != 1 || got[0] != pt {
		t.Fatalf("public tokens = %v, want [%s]", got, pt)
	}
	if ss[0].GetLinkSessionId() == "" || ss[0].GetStartedAt().IsZero() {
		t.Errorf("session = %+v", ss[0])
	}
	r := ss[0].GetResults()
	if inst := r.GetItemAddResults()[0].GetInstitution(); inst.GetInstitutionId() != "ins_109508" {
		t.Errorf("institution = %+v", inst)
	}

	// Another link token reports nothing of this one's.
	other, _, err := e.api.LinkTokenCreate(ctx).LinkTokenCreateRequest(*req).Execute()
	if err != nil {
		t.Fatal(err)
	}
	if got := publicTokens(sessions(other.GetLinkToken())); len(got) != 0 {
		t.Errorf("other link token reports %v", got)
	}

	// Update mode: the session's public token is for the same item.
	at, _ := e.linkItem(t, "")
	up := linkReq("user-1")
	up.SetAccessToken(at)
	ut, _, err := e.api.LinkTokenCreate(ctx).LinkTokenCreateRequest(*up).Execute()
	if err != nil {
		t.Fatal(err)
	}
	upt, err := e.sim.CompleteLink(ut.GetLinkToken(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	if got := publicTokens(sessions(ut.GetLinkToken())); len(got) != 1 || got[0] != upt {
		t.Errorf("update-mode public tokens = %v, want [%s]", got, upt)
	}

	// Session data is kept six hours after the session ends.
	e.clk.Add(6*time.Hour + time.Minute)
	if got := publicTokens(sessions(lt.GetLinkToken())); len(got) != 0 {
		t.Errorf("after 6h public tokens = %v, want none", got)
	}
}
