package webhook

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/safeclose/safeclose/internal/jwkp256"
	"github.com/safeclose/safeclose/internal/loglimit"
	"github.com/safeclose/safeclose/internal/p256fixed"
)

// Sentinels for key trouble.
var (
	ErrUnknownKey     = errors.New("webhook: unknown key id")
	ErrKeyExpired     = errors.New("webhook: key has expired_at set")
	ErrKeyFetch       = errors.New("webhook: key fetch failed")
	ErrKeyRateLimited = errors.New("webhook: unknown-key fetch rate limited")
	// ErrKeyAuth is what a Fetcher wraps when Plaid refuses the tenant's
	// credentials: no key can be fetched until the configuration is fixed.
	ErrKeyAuth = errors.New("webhook: key fetch refused the tenant's Plaid credentials")
)

// Unavailable reports whether err means the key could not be looked up now
// (fetch failed, throttled, credentials refused) rather than that the webhook
// is bad. Such a webhook must be answered 503 so Plaid retries, never 4xx.
func Unavailable(err error) bool {
	return errors.Is(err, ErrKeyFetch) || errors.Is(err, ErrKeyRateLimited) || errors.Is(err, ErrKeyAuth)
}

// Step names a verification step.
type Step int

// The steps, in order.
const (
	StepHeader Step = iota + 1
	StepAlg
	StepKey
	StepSignature
	StepIssuedAt
	StepBodyHash
)

func (s Step) String() string {
	switch s {
	case StepHeader:
		return "header"
	case StepAlg:
		return "alg"
	case StepKey:
		return "key"
	case StepSignature:
		return "signature"
	case StepIssuedAt:
		return "iat"
	case StepBodyHash:
		return "body_sha256"
	}
	return "unknown"
}

// VerifyError says which step failed.
type VerifyError struct {
	Step Step
	Err  error
	// Skew is set when a webhook whose signature verified is refused at
	// StepIssuedAt: the verifier's clock minus the signed iat (negative when
	// the iat is ahead of the clock). See Stale.
	Skew time.Duration
}

func (e *VerifyError) Error() string { return "webhook: " + e.Step.String() + ": " + e.Err.Error() }
func (e *VerifyError) Unwrap() error { return e.Err }

func fail(s Step, err error) error { return &VerifyError{Step: s, Err: err} }

// Stale reports whether err refused a genuinely signed webhook only for its
// iat, and the skew seen (see VerifyError.Skew). Plaid signs each attempt
// when it sends it, so a stale iat from Plaid means the host clock is off
// (or the webhook is a replay, which gains nothing from a retryable
// answer): the caller should answer so that Plaid retries.
func Stale(err error) (skew time.Duration, ok bool) {
	var ve *VerifyError
	if errors.As(err, &ve) && ve.Step == StepIssuedAt && ve.Skew != 0 {
		return ve.Skew, true
	}
	return 0, false
}

// Key is Plaid's JWK as /webhook_verification_key/get returns it.
type Key struct {
	Kid       string `json:"kid"`
	Alg       string `json:"alg"`
	Crv       string `json:"crv"`
	Kty       string `json:"kty"`
	Use       string `json:"use"`
	X         string `json:"x"`
	Y         string `json:"y"`
	CreatedAt int64  `json:"created_at"`
	ExpiredAt *int64 `json:"expired_at"`
}

// Fetcher gets a key by kid. It returns an error wrapping ErrUnknownKey when
// Plaid does not know the kid, ErrKeyAuth when Plaid refuses the credentials,
// and any other error for transport trouble.
type Fetcher func(ctx context.Context, kid string) (Key, error)

// Options configure a Verifier.
type Options struct {
	Fetch        Fetcher          // required
	Now          func() time.Time // nil means time.Now
	MaxAge       time.Duration    // zero means 5m (Plaid's rule)
	FutureSkew   time.Duration    // zero means 1m: iat further in the future is refused
	CacheSize    int              // zero means 64 keys; the negative cache holds at most 4× this
	MissInterval time.Duration    // zero means 1s: at most one fetch of an uncached kid per interval
	NegativeTTL  time.Duration    // zero means 1m: an unknown kid is not fetched again for this long
	RefreshAfter time.Duration    // zero means 2m: a cached key is re-fetched (to learn expired_at) after this
	// BlamedInterval is MissInterval for a source (VerifyFrom) whose last
	// fetched kid Plaid did not know, for NegativeTTL after it: zero means
	// 10 × MissInterval. See Verifier.
	BlamedInterval time.Duration
}

// cached is a known key. Its expiry is checked on every use, so a key whose
// expired_at passes is refused at once, and one Plaid expires is refused at
// the latest RefreshAfter later.
type cached struct {
	pub       *p256fixed.Key // the key with its precomputed multiples
	expiredAt *time.Time
	fetchedAt time.Time
}

// usable returns c, or ErrKeyExpired once its expired_at has passed.
func (c *cached) usable(now time.Time) (*cached, error) {
	if c.expiredAt != nil && !now.Before(*c.expiredAt) {
		return nil, ErrKeyExpired
	}
	return c, nil
}

type flight struct {
	done chan struct{}
	c    *cached
	err  error
}

// Verifier checks Plaid webhooks for one tenant. It is safe for concurrent
// use. Known keys never wait on the miss limiter; unknown kids share one
// limiter per Verifier (so per tenant) and a bounded negative cache, so a
// flood of made-up kids cannot evict known keys nor grow memory.
//
// A forger sending a new made-up kid with every request would otherwise
// take each fetch as the limiter frees it, and Plaid's genuine kid, after
// a restart or a key rotation, would never be fetched: every genuine
// webhook answered 503 for as long as the flood lasts (found by a review,
// 2026-12-08). So a source (VerifyFrom: an IPv4 address, an IPv6 /64)
// whose fetched kid Plaid did not know is blamed for NegativeTTL, and may
// start a fetch only when none started in the last BlamedInterval (10 s);
// other sources, Plaid's among them, keep MissInterval (1 s). A flood from
// one source then holds one fetch in ten, and holding them all takes a
// fresh source a second. Behind a proxy that hides the client's address
// (no PROXY protocol) every request has one source, and the flood starves
// genuine fetches as before: `webhooks.source_ips` (Plaid's published
// addresses) refuses it before verification.
type Verifier struct {
	o        Options
	mu       sync.Mutex
	keys     map[string]*cached
	order    []string // insertion order, for eviction
	unknown  map[string]time.Time
	flights  map[string]*flight
	lastMiss time.Time
	blamed   map[netip.Prefix]time.Time // source → end of its blame; at most blamedMax
	health   error                      // the last credential refusal; nil once Plaid answers again
	stale    loglimit.Limiter           // ReportStale: one report a minute
}

// ReportStale counts a webhook refused as Stale at now and reports whether
// to tell the operator: at most once a minute per Verifier (so per tenant),
// with how many were refused since the last report, this one included.
func (v *Verifier) ReportStale(now time.Time) (since int, report bool) {
	dropped, ok := v.stale.Allow(now)
	if !ok {
		return 0, false
	}
	return int(dropped) + 1, true
}

// NewVerifier builds a Verifier.
func NewVerifier(o Options) (*Verifier, error) {
	if o.Fetch == nil {
		return nil, errors.New("webhook: Options.Fetch is required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxAge == 0 {
		o.MaxAge = 5 * time.Minute
	}
	if o.FutureSkew == 0 {
		o.FutureSkew = time.Minute
	}
	if o.CacheSize == 0 {
		o.CacheSize = 64
	}
	if o.MissInterval == 0 {
		o.MissInterval = time.Second
	}
	if o.BlamedInterval == 0 {
		o.BlamedInterval = 10 * o.MissInterval
	}
	if o.NegativeTTL == 0 {
		o.NegativeTTL = time.Minute
	}
	if o.RefreshAfter == 0 {
		o.RefreshAfter = 2 * time.Minute
	}
	return &Verifier{o: o, keys: map[string]*cached{}, unknown: map[string]time.Time{}, flights: map[string]*flight{},
		blamed: map[netip.Prefix]time.Time{}, stale: loglimit.Limiter{Rate: 1.0 / 60}}, nil
}

// Claims are the verified JWT claims.
type Claims struct {
	Kid        string
	IssuedAt   time.Time
	BodySHA256 [32]byte
}

type header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

type payload struct {
	IAT        json.RawMessage `json:"iat"`
	BodySHA256 string          `json:"request_body_sha256"`
}

// parseHeader decodes the JOSE header without verifying and pins ES256.
func parseHeader(tok string) (header, error) {
	var h header
	if tok == "" {
		return h, fail(StepHeader, errors.New("missing Plaid-Verification header"))
	}
	if strings.Count(tok, ".") != 2 {
		return h, fail(StepHeader, errors.New("not a compact JWS"))
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok[:strings.IndexByte(tok, '.')])
	if err != nil {
		return h, fail(StepHeader, errors.New("header is not base64url"))
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return h, fail(StepHeader, errors.New("header is not JSON"))
	}
	if h.Alg != "ES256" {
		return h, fail(StepAlg, fmt.Errorf("alg %q is not ES256", h.Alg))
	}
	if h.Kid == "" {
		return h, fail(StepHeader, errors.New("no kid"))
	}
	return h, nil
}

// blamedMax bounds the blamed sources; past it, lapsed entries go first,
// then arbitrary ones (a forgotten source only gets MissInterval again).
const blamedMax = 4096

// Verify runs every step on a webhook's header and raw body.
func (v *Verifier) Verify(ctx context.Context, tok string, body []byte) (Claims, error) {
	return v.VerifyFrom(ctx, netip.Addr{}, tok, body)
}

// VerifyFrom is Verify for a webhook sent from src (the client's address;
// the zero Addr when unknown), which the unknown-kid limiter tells apart.
func (v *Verifier) VerifyFrom(ctx context.Context, src netip.Addr, tok string, body []byte) (Claims, error) {
	tok = strings.TrimSpace(tok)
	h, err := parseHeader(tok)
	if err != nil {
		return Claims{}, err
	}
	c, err := v.key(ctx, h.Kid, src)
	if err != nil {
		return Claims{}, fail(StepKey, err)
	}
	return check(tok, h.Kid, body, c.pub, v.o.Now(), v.o.MaxAge, v.o.FutureSkew)
}

// check verifies signature, iat and body hash with a known key.
//
// The compact JWS is split here rather than by jws.Verify/jwt.Parse: the
// header was already decoded (and alg pinned to ES256) by parseHeader, so
// parsing it again into jwx's generic header and claim maps only cost
// allocations (issue 12: 115 allocs a webhook). The signature itself is
// still checked by jwx's ES256 verifier, over the exact signing input
// (header.payload as received), with the pre-parsed key: a *p256fixed.Key,
// which the verifier p256fixed.New registered checks with the key's
// precomputed multiples (issue 12: 75 → ~35 µs a webhook).
func check(tok, kid string, body []byte, pub *p256fixed.Key, now time.Time, maxAge, skew time.Duration) (Claims, error) {
	first, last := strings.IndexByte(tok, '.'), strings.LastIndexByte(tok, '.')
	if first < 0 || last <= first {
		return Claims{}, fail(StepHeader, errors.New("not a compact JWS"))
	}
	tb := []byte(tok)
	var sig [64]byte // ES256: r‖s, 32 bytes each
	// The length first: base64 panics when the destination is too short
	// (Issue 10.9: a longer signature crashed the process).
	enc64 := tb[last+1:]
	if len(enc64) != base64.RawURLEncoding.EncodedLen(len(sig)) {
		return Claims{}, fail(StepSignature, errors.New("signature does not verify"))
	}
	if n, err := base64.RawURLEncoding.Decode(sig[:], enc64); err != nil || n != len(sig) {
		return Claims{}, fail(StepSignature, errors.New("signature does not verify"))
	}
	ver, err := jws.NewVerifier(jwa.ES256)
	if err != nil {
		return Claims{}, fail(StepSignature, err)
	}
	if err := ver.Verify(tb[:last], sig[:], pub); err != nil {
		return Claims{}, fail(StepSignature, errors.New("signature does not verify"))
	}
	enc := tb[first+1 : last]
	raw := make([]byte, base64.RawURLEncoding.DecodedLen(len(enc)))
	n, err := base64.RawURLEncoding.Decode(raw, enc)
	if err != nil {
		return Claims{}, fail(StepIssuedAt, errors.New("payload is not base64url"))
	}
	var p payload
	if err := json.Unmarshal(raw[:n], &p); err != nil || len(p.IAT) == 0 || string(p.IAT) == "null" {
		return Claims{}, fail(StepIssuedAt, errors.New("payload has no iat"))
	}
	// iat must be a JSON number: a quoted "123" is refused.
	iat, err := strconv.ParseInt(string(p.IAT), 10, 64)
	if err != nil {
		return Claims{}, fail(StepIssuedAt, errors.New("iat is not an integer JSON number"))
	}
	at := time.Unix(iat, 0)
	if now.Sub(at) > maxAge {
		return Claims{}, &VerifyError{Step: StepIssuedAt, Skew: now.Sub(at),
			Err: fmt.Errorf("issued %s ago, more than %s", now.Sub(at).Round(time.Second), maxAge)}
	}
	if at.Sub(now) > skew {
		return Claims{}, &VerifyError{Step: StepIssuedAt, Skew: now.Sub(at),
			Err: fmt.Errorf("issued %s in the future, more than %s", at.Sub(now).Round(time.Second), skew)}
	}
	sum := sha256.Sum256(body)
	var want [64]byte
	hex.Encode(want[:], sum[:])
	got := []byte(p.BodySHA256)
	for i, c := range got { // lower-case hex, as strings.ToLower did, without its copy
		if 'A' <= c && c <= 'Z' {
			got[i] = c + 'a' - 'A'
		}
	}
	if subtle.ConstantTimeCompare(want[:], got) != 1 {
		return Claims{}, fail(StepBodyHash, errors.New("body does not match request_body_sha256"))
	}
	return Claims{Kid: kid, IssuedAt: at, BodySHA256: sum}, nil
}

// key returns the usable key for kid: from the cache, or fetched
// (single-flight). Only a kid that is not cached waits on the miss limiter; a
// known key is refreshed every RefreshAfter and kept through a failed refresh.
func (v *Verifier) key(ctx context.Context, kid string, from netip.Addr) (*cached, error) {
	now := v.o.Now()
	v.mu.Lock()
	c := v.keys[kid]
	if c != nil && now.Sub(c.fetchedAt) < v.o.RefreshAfter {
		v.mu.Unlock()
		return c.usable(now)
	}
	if c == nil {
		if until, ok := v.unknown[kid]; ok && now.Before(until) {
			v.mu.Unlock()
			return nil, ErrUnknownKey
		}
	}
	f := v.flights[kid]
	if f == nil {
		var src netip.Prefix // the sender, as the unknown-kid limiter counts it: only on a miss
		if c == nil {
			src = sourceOf(from)
			every := v.o.MissInterval
			if until, ok := v.blamed[src]; ok && now.Before(until) { // the zero Prefix is never blamed
				every = v.o.BlamedInterval
			}
			if now.Sub(v.lastMiss) < every {
				v.mu.Unlock()
				return nil, ErrKeyRateLimited
			}
			v.lastMiss = now
		}
		f = &flight{done: make(chan struct{})}
		v.flights[kid] = f
		v.mu.Unlock()
		f.c, f.err = v.fetch(ctx, kid, c)
		v.mu.Lock()
		if c == nil && src.IsValid() && errors.Is(f.err, ErrUnknownKey) {
			v.blame(src, v.o.Now())
		}
		delete(v.flights, kid)
		close(f.done)
		v.mu.Unlock()
	} else {
		v.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrKeyFetch, ctx.Err())
		}
	}
	if f.err != nil {
		return nil, f.err
	}
	return f.c.usable(v.o.Now())
}

// KeyFetchHealth reports why keys cannot be fetched for this tenant: an error
// wrapping ErrKeyAuth while Plaid refuses the tenant's credentials, nil
// otherwise (and again once Plaid answers a fetch).
func (v *Verifier) KeyFetchHealth() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.health
}

func (v *Verifier) fetch(ctx context.Context, kid string, old *cached) (*cached, error) {
	k, err := v.o.Fetch(ctx, kid)
	var pub *p256fixed.Key
	var perr error
	if err == nil { // the table is built (~1 ms, once per key) before the lock
		pub, perr = publicKey(k)
	}
	now := v.o.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	switch {
	case errors.Is(err, ErrKeyAuth):
		v.health = err
		if old != nil {
			return old, nil // known keys keep working
		}
		return nil, fmt.Errorf("%w: %w", ErrKeyFetch, err)
	case errors.Is(err, ErrUnknownKey):
		v.health = nil
		v.forget(kid)
		v.unknown[kid] = now.Add(v.o.NegativeTTL)
		v.boundUnknown(now)
		return nil, err
	case err != nil:
		if old != nil {
			return old, nil // keep serving a known key through a Plaid hiccup
		}
		return nil, fmt.Errorf("%w: %w", ErrKeyFetch, err)
	}
	v.health = nil
	if k.Kid != "" && k.Kid != kid {
		return nil, fmt.Errorf("%w: Plaid answered kid %q for %q", ErrUnknownKey, k.Kid, kid)
	}
	if perr != nil {
		return nil, perr
	}
	c := &cached{pub: pub, fetchedAt: now}
	if k.ExpiredAt != nil {
		at := time.Unix(*k.ExpiredAt, 0)
		c.expiredAt = &at
	}
	if _, ok := v.keys[kid]; !ok {
		v.order = append(v.order, kid)
		for len(v.order) > v.o.CacheSize {
			delete(v.keys, v.order[0])
			v.order = v.order[1:]
		}
	}
	v.keys[kid] = c
	return c, nil
}

// forget drops kid from the key cache and its eviction order.
func (v *Verifier) forget(kid string) {
	if _, ok := v.keys[kid]; !ok {
		return
	}
	delete(v.keys, kid)
	for i, k := range v.order {
		if k == kid {
			v.order = append(v.order[:i], v.order[i+1:]...)
			break
		}
	}
}

// blame marks src as the sender of a kid Plaid does not know, until
// NegativeTTL from now, keeping at most blamedMax sources.
func (v *Verifier) blame(src netip.Prefix, now time.Time) {
	v.blamed[src] = now.Add(v.o.NegativeTTL)
	bound(v.blamed, blamedMax, now)
}

// sourceOf is the unit the limiter tells apart: an IPv4 address, or an
// IPv6 address's /64 (one host usually holds a whole /64). The zero Addr
// gives the zero Prefix, never blamed.
func sourceOf(a netip.Addr) netip.Prefix {
	if !a.IsValid() {
		return netip.Prefix{}
	}
	a = a.Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// boundUnknown keeps the negative cache at most 4×CacheSize (a forgotten
// kid only costs a rate-limited fetch).
func (v *Verifier) boundUnknown(now time.Time) { bound(v.unknown, 4*v.o.CacheSize, now) }

// bound keeps m, entries that lapse at their value, at most limit long:
// lapsed entries go first, then arbitrary ones.
func bound[K comparable](m map[K]time.Time, limit int, now time.Time) {
	if len(m) <= limit {
		return
	}
	for k, until := range m {
		if !now.Before(until) {
			delete(m, k)
		}
	}
	for k := range m {
		if len(m) <= limit {
			break
		}
		delete(m, k)
	}
}

// publicKey validates a JWK as a P-256 ES256 signing key; the point is
// read by internal/jwkp256, the module's one P-256 JWK parser. It returns
// the key with its precomputed multiples (shared with other tenants that
// verify with the same key).
func publicKey(k Key) (*p256fixed.Key, error) {
	if k.Kty != "EC" || (k.Alg != "" && k.Alg != "ES256") || (k.Use != "" && k.Use != "sig") {
		return nil, fmt.Errorf("webhook: key %q is not an ES256 P-256 signing key", k.Kid)
	}
	pub, err := jwkp256.PublicKey(k.Crv, k.X, k.Y)
	switch {
	case errors.Is(err, jwkp256.ErrCurve):
		return nil, fmt.Errorf("webhook: key %q is not an ES256 P-256 signing key", k.Kid)
	case errors.Is(err, jwkp256.ErrNotOnCurve):
		return nil, fmt.Errorf("webhook: key %q is not on P-256", k.Kid)
	case err != nil:
		return nil, fmt.Errorf("webhook: key %q has bad coordinates", k.Kid)
	}
	fk, err := p256fixed.New(pub)
	if err != nil {
		return nil, fmt.Errorf("webhook: key %q is not on P-256", k.Kid)
	}
	return fk, nil
}

// ParseKeyJSON accepts a bare JWK or Plaid's {"key":{…}} answer.
func ParseKeyJSON(b []byte) (Key, error) {
	var wrap struct {
		Key *Key `json:"key"`
	}
	if err := json.Unmarshal(b, &wrap); err == nil && wrap.Key != nil {
		return *wrap.Key, nil
	}
	var k Key
	if err := json.Unmarshal(b, &k); err != nil {
		return Key{}, fmt.Errorf("webhook: key JSON: %w", err)
	}
	if k.X == "" || k.Y == "" {
		return Key{}, errors.New("webhook: key JSON has no x/y")
	}
	return k, nil
}

// VerifyOffline runs the same steps against one given key, as of at. A key
// whose expired_at is at or before at is refused.
func VerifyOffline(tok string, body []byte, k Key, at time.Time) (Claims, error) {
	tok = strings.TrimSpace(tok)
	h, err := parseHeader(tok)
	if err != nil {
		return Claims{}, err
	}
	if k.Kid != "" && h.Kid != k.Kid {
		return Claims{}, fail(StepKey, fmt.Errorf("%w: webhook kid %q, key kid %q", ErrUnknownKey, h.Kid, k.Kid))
	}
	if k.ExpiredAt != nil && !at.Before(time.Unix(*k.ExpiredAt, 0)) {
		return Claims{}, fail(StepKey, ErrKeyExpired)
	}
	pub, err := publicKey(k)
	if err != nil {
		return Claims{}, fail(StepKey, err)
	}
	return check(tok, h.Kid, body, pub, at, 5*time.Minute, time.Minute)
}
