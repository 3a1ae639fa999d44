package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	plaid "github.com/plaid/plaid-go/v29/plaid"

	"github.com/safeclose/safeclose/internal/webhook"
)

// plaidClient wraps plaid-go for one tenant.
type plaidClient struct {
	api  *plaid.APIClient
	opts PlaidOptions
}

func newPlaidClient(o PlaidOptions, hc *http.Client) *plaidClient {
	cfg := plaid.NewConfiguration()
	cfg.AddDefaultHeader("PLAID-CLIENT-ID", o.ClientID)
	cfg.AddDefaultHeader("PLAID-SECRET", o.Secret)
	cfg.UseEnvironment(plaid.Environment(strings.TrimSuffix(o.BaseURL, "/")))
	capped := *hc
	capped.Transport = capAnswers{hc.Transport}
	cfg.HTTPClient = &capped
	cfg.UserAgent = "Safeclose (plaid-go v29)"
	return &plaidClient{api: plaid.NewAPIClient(cfg), opts: o}
}

// maxPlaidAnswer bounds the body of any Plaid answer. plaid-go reads every
// answer whole (ReadAll), so without it a broken Plaid, or whatever answers
// a misconfigured base URL, could make the proxy hold hundreds of MB per
// call; the answers Safeclose asks for are a few KB.
const maxPlaidAnswer = 1 << 20

// errPlaidAnswerTooLarge ends an answer past maxPlaidAnswer.
var errPlaidAnswerTooLarge = errors.New("proxy: plaid answer exceeds 1 MiB")

// capAnswers is the RoundTripper of the Plaid client: it refuses an answer
// that declares more than maxPlaidAnswer bytes and cuts one that sends more.
type capAnswers struct{ next http.RoundTripper } // nil: what http.Client uses then

func (c capAnswers) RoundTrip(r *http.Request) (*http.Response, error) {
	next := c.next
	if next == nil {
		next = http.DefaultTransport // what the client used without the cap
	}
	res, err := next.RoundTrip(r)
	if err != nil {
		return res, err
	}
	if res.ContentLength > maxPlaidAnswer {
		res.Body.Close() //nolint:errcheck // refused; the connection is dropped
		return nil, errPlaidAnswerTooLarge
	}
	res.Body = &cappedBody{rc: res.Body, left: maxPlaidAnswer}
	return res, nil
}

type cappedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1] // one byte past the cap tells a body that is too large
	}
	n, err := b.rc.Read(p)
	if b.left -= int64(n); b.left < 0 {
		return 0, errPlaidAnswerTooLarge
	}
	return n, err
}

func (b *cappedBody) Close() error { return b.rc.Close() }

// validPlaidID reports whether s can be a Plaid identifier (item_id,
// access_token, link_token, institution_id, error_code): 1–256 visible ASCII
// characters. Anything else in an answer (control bytes, NUL, spaces,
// non-ASCII, a megabyte) is a broken or forged answer: the values become
// store keys, log fields and JSON the client reads.
func validPlaidID(s string) bool {
	if len(s) == 0 || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// errMalformedAnswer is a Plaid answer whose identifiers are not Plaid's.
var errMalformedAnswer = errors.New("proxy: plaid answer has a malformed identifier")

// clientUserID derives Plaid's client_user_id from tenant and user, so Plaid
// never sees our users' raw ids.
func clientUserID(tenant, user string) string {
	h := sha256.Sum256([]byte("safeclose/client_user_id/v1\x00" + tenant + "\x00" + user))
	return "sc_" + base64.RawURLEncoding.EncodeToString(h[:18])
}

func (c *plaidClient) linkToken(ctx context.Context, tenant, user, accessToken string) (string, time.Time, error) {
	cc := make([]plaid.CountryCode, 0, len(c.opts.CountryCodes))
	for _, x := range c.opts.CountryCodes {
		cc = append(cc, plaid.CountryCode(x))
	}
	req := plaid.NewLinkTokenCreateRequest(c.opts.ClientName, c.opts.Language, cc,
		plaid.LinkTokenCreateRequestUser{ClientUserId: clientUserID(tenant, user)})
	if c.opts.WebhookURL != "" {
		req.SetWebhook(c.opts.WebhookURL)
	}
	if c.opts.RedirectURI != "" {
		req.SetRedirectUri(c.opts.RedirectURI)
	}
	if accessToken != "" {
		req.SetAccessToken(accessToken) // update mode: no products
	} else {
		ps := make([]plaid.Products, 0, len(c.opts.Products))
		for _, p := range c.opts.Products {
			ps = append(ps, plaid.Products(p))
		}
		req.SetProducts(ps)
	}
	resp, hr, err := c.api.PlaidApi.LinkTokenCreate(ctx).LinkTokenCreateRequest(*req).Execute()
	if err != nil {
		return "", time.Time{}, plaidErr("link/token/create", hr, err)
	}
	if !validPlaidID(resp.GetLinkToken()) {
		return "", time.Time{}, fmt.Errorf("link/token/create: %w: %w", ErrPlaidDown, errMalformedAnswer)
	}
	return resp.GetLinkToken(), resp.GetExpiration(), nil
}

func (c *plaidClient) exchange(ctx context.Context, publicToken string) (accessToken, itemID string, err error) {
	resp, hr, err := c.api.PlaidApi.ItemPublicTokenExchange(ctx).
		ItemPublicTokenExchangeRequest(*plaid.NewItemPublicTokenExchangeRequest(publicToken)).Execute()
	if err != nil {
		return "", "", plaidErr("item/public_token/exchange", hr, err)
	}
	if !validPlaidID(resp.GetAccessToken()) || !validPlaidID(resp.GetItemId()) {
		// Plaid acted (2xx) but we cannot hold what it made: a lost answer.
		return "", "", fmt.Errorf("item/public_token/exchange: %w: %w", ErrPlaidDown, errMalformedAnswer)
	}
	return resp.GetAccessToken(), resp.GetItemId(), nil
}

// linkPublicTokens asks /link/token/get which public tokens a link token's
// Link sessions produced (results.item_add_results, and the deprecated
// on_success for legacy integrations).
func (c *plaidClient) linkPublicTokens(ctx context.Context, linkToken string) ([]string, error) {
	resp, hr, err := c.api.PlaidApi.LinkTokenGet(ctx).LinkTokenGetRequest(*plaid.NewLinkTokenGetRequest(linkToken)).Execute()
	if err != nil {
		return nil, plaidErr("link/token/get", hr, err)
	}
	var out []string
	for _, ls := range resp.GetLinkSessions() {
		if r, ok := ls.GetResultsOk(); ok && r != nil {
			for _, a := range r.GetItemAddResults() {
				out = append(out, a.GetPublicToken())
			}
		}
		if os, ok := ls.GetOnSuccessOk(); ok && os != nil && os.GetPublicToken() != "" {
			out = append(out, os.GetPublicToken())
		}
	}
	return out, nil
}

// itemInfo is what /item/get tells us.
type itemInfo struct {
	InstitutionID string
	ErrorCode     string // "" when healthy
}

func (c *plaidClient) itemGet(ctx context.Context, accessToken string) (itemInfo, error) {
	resp, hr, err := c.api.PlaidApi.ItemGet(ctx).ItemGetRequest(*plaid.NewItemGetRequest(accessToken)).Execute()
	if err != nil {
		return itemInfo{}, plaidErr("item/get", hr, err)
	}
	it := resp.GetItem()
	info := itemInfo{InstitutionID: it.GetInstitutionId()}
	if e, ok := it.GetErrorOk(); ok && e != nil {
		info.ErrorCode = e.GetErrorCode()
	}
	if info.InstitutionID != "" && !validPlaidID(info.InstitutionID) {
		return itemInfo{}, fmt.Errorf("item/get: %w: %w", ErrPlaidDown, errMalformedAnswer)
	}
	return info, nil
}

func (c *plaidClient) itemRemove(ctx context.Context, accessToken string) error {
	_, hr, err := c.api.PlaidApi.ItemRemove(ctx).ItemRemoveRequest(*plaid.NewItemRemoveRequest(accessToken)).Execute()
	if err != nil {
		return plaidErr("item/remove", hr, err)
	}
	return nil
}

// webhookKey fetches a webhook verification key for the verifier.
func (c *plaidClient) webhookKey(ctx context.Context, kid string) (webhook.Key, error) {
	resp, hr, err := c.api.PlaidApi.WebhookVerificationKeyGet(ctx).
		WebhookVerificationKeyGetRequest(*plaid.NewWebhookVerificationKeyGetRequest(kid)).Execute()
	if err != nil {
		var pe *PlaidError
		if e := plaidErr("webhook_verification_key/get", hr, err); errors.As(e, &pe) {
			if credentialRefused(pe) {
				return webhook.Key{}, fmt.Errorf("%w: %s", webhook.ErrKeyAuth, pe.Code)
			}
			// Only Plaid's own refusal of the request says the kid is not
			// one of its keys (400 INVALID_INPUT, INVALID_WEBHOOK_VERIFICATION_KEY_ID).
			// Any other answer (a wrong base URL's 404, an egress proxy's
			// 407, a timeout page) says nothing about the kid: the webhook
			// gets 503 and Plaid retries it.
			if pe.HTTPStatus == http.StatusBadRequest && (pe.Type == "INVALID_INPUT" || pe.Type == "INVALID_REQUEST") {
				return webhook.Key{}, fmt.Errorf("%w: %s", webhook.ErrUnknownKey, pe.Code)
			}
		}
		return webhook.Key{}, fmt.Errorf("%w: %w", webhook.ErrKeyFetch, err)
	}
	k := resp.GetKey()
	key := webhook.Key{
		Kid: k.GetKid(), Alg: k.GetAlg(), Crv: k.GetCrv(), Kty: k.GetKty(), Use: k.GetUse(),
		X: k.GetX(), Y: k.GetY(), CreatedAt: int64(k.GetCreatedAt()),
	}
	if v, ok := k.GetExpiredAtOk(); ok && v != nil {
		e := int64(*v)
		key.ExpiredAt = &e
	}
	return key, nil
}

// credentialRefused reports whether Plaid refused the tenant's own
// credentials rather than the request: no key can be fetched until the
// configuration is fixed, so the webhook gets 503 and the tenant is not ready.
func credentialRefused(pe *PlaidError) bool {
	switch pe.Code {
	case "INVALID_API_KEYS", "UNAUTHORIZED_ENVIRONMENT", "UNAUTHORIZED_ROUTE_ACCESS":
		return true
	}
	return pe.HTTPStatus == http.StatusUnauthorized || pe.HTTPStatus == http.StatusForbidden
}

// ping checks that Plaid answers at all (any Plaid error object counts).
func (c *plaidClient) ping(ctx context.Context) error {
	_, err := c.webhookKey(ctx, "safeclose-readiness-probe")
	if err == nil || errors.Is(err, webhook.ErrUnknownKey) {
		return nil
	}
	return err
}

// plaidErr turns plaid-go's error into *PlaidError or ErrPlaidDown.
func plaidErr(op string, hr *http.Response, err error) error {
	var g plaid.GenericOpenAPIError
	if errors.As(err, &g) && hr != nil && hr.StatusCode < 300 {
		// A success we could not decode: Plaid may have acted (made an
		// item), so it is a lost answer, not a refusal.
		return fmt.Errorf("%s: %w: undecodable answer: %w", op, ErrPlaidDown, err)
	}
	if errors.As(err, &g) && hr != nil {
		pe := &PlaidError{HTTPStatus: hr.StatusCode}
		if p, perr := plaid.ToPlaidError(g); perr == nil && validPlaidID(p.ErrorCode) {
			pe.Type, pe.Code, pe.Message = string(p.ErrorType), p.ErrorCode, p.ErrorMessage
			pe.RequestID = p.GetRequestId()
		} else {
			pe.Type, pe.Code = "API_ERROR", "UNPARSEABLE_RESPONSE"
		}
		if hr.StatusCode >= 500 {
			return fmt.Errorf("%s: %w: %w", op, ErrPlaidDown, pe)
		}
		return fmt.Errorf("%s: %w", op, pe)
	}
	return fmt.Errorf("%s: %w: %w", op, ErrPlaidDown, err)
}
