package plaidsim

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// Options configure the emulator. Zero values are documented per field.
type Options struct {
	ClientID, Secret string           // required: the credentials it accepts
	Now              func() time.Time // nil means time.Now
	Seed             int64            // 0 means random ids; non-zero means deterministic ids and keys
	StatePath        string           // "" means memory only; else JSON state loaded at New and saved on change
	HTTPClient       *http.Client     // webhook delivery; nil means a client with Plaid's 10s timeout
	RetryDelays      []time.Duration  // nil means Plaid's: 30s, then ×4, while under 24h
	TimeScale        float64          // 0 means 1; 0.001 makes retry delays 1000× shorter
	Environment      string           // "" means "sandbox"
	Logger           *slog.Logger     // nil means discard
}

// Server is the emulator; it is an http.Handler and safe for concurrent use.
type Server struct {
	o   Options
	log *slog.Logger
	hc  *http.Client

	mu    sync.Mutex
	pcg   *rand.PCG // the source of rng, kept so a seeded stream survives restarts
	rng   *rand.Rand
	st    state
	keys  []*sigKey // last is current
	deliv []Delivery

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type sigKey struct {
	Kid       string `json:"kid"`
	PKCS8     []byte `json:"pkcs8"`
	CreatedAt int64  `json:"created_at"`
	ExpiredAt *int64 `json:"expired_at"`
	priv      *ecdsa.PrivateKey
}

type linkToken struct {
	Token        string    `json:"token"`
	CreatedAt    time.Time `json:"created_at"`
	Expiration   time.Time `json:"expiration"`
	ClientName   string    `json:"client_name"`
	Language     string    `json:"language"`
	CountryCodes []string  `json:"country_codes"`
	Products     []string  `json:"products"`
	Webhook      string    `json:"webhook"`
	RedirectURI  string    `json:"redirect_uri"`
	UserID       string    `json:"client_user_id"`
	AccessToken  string    `json:"access_token,omitempty"` // update mode
	// Sessions are the Link sessions completed with this token, reported by
	// /link/token/get as link_sessions.
	Sessions []*linkSession `json:"sessions,omitempty"`
}

// linkSession is one completed Link session: the public token it produced.
type linkSession struct {
	ID            string    `json:"id"`
	StartedAt     time.Time `json:"started_at"`
	FinishedAt    time.Time `json:"finished_at"`
	PublicToken   string    `json:"public_token"`
	InstitutionID string    `json:"institution_id"`
}

type publicToken struct {
	Token     string    `json:"token"`
	ItemID    string    `json:"item_id"`
	CreatedAt time.Time `json:"created_at"`
	Used      bool      `json:"used"`
}

type item struct {
	ItemID        string    `json:"item_id"`
	AccessToken   string    `json:"access_token"`
	InstitutionID string    `json:"institution_id"`
	Webhook       string    `json:"webhook"`
	Products      []string  `json:"products"`
	CreatedAt     time.Time `json:"created_at"`
	LoginRequired bool      `json:"login_required"`
	Synced        bool      `json:"synced"` // /transactions/sync called at least once
	LastWebhook   string    `json:"last_webhook,omitempty"`
	LastWebhookAt time.Time `json:"last_webhook_at,omitzero"`
}

type state struct {
	LinkTokens   map[string]*linkToken   `json:"link_tokens"`
	PublicTokens map[string]*publicToken `json:"public_tokens"`
	Items        map[string]*item        `json:"items"`
	ByToken      map[string]string       `json:"by_access_token"`
	Keys         []*sigKey               `json:"keys"`
	// RNG is the seeded generator's position (Seed != 0 only), so that a
	// restarted emulator continues the stream instead of re-issuing the ids
	// and tokens of the items it has just loaded.
	RNG []byte `json:"rng,omitempty"`
}

// New builds the emulator, loading StatePath if it exists.
func New(o Options) (*Server, error) {
	if o.ClientID == "" || o.Secret == "" {
		return nil, errors.New("plaidsim: ClientID and Secret are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.TimeScale == 0 {
		o.TimeScale = 1
	}
	if o.Environment == "" {
		o.Environment = "sandbox"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.RetryDelays == nil {
		for d := 30 * time.Second; d < 24*time.Hour; d *= 4 {
			o.RetryDelays = append(o.RetryDelays, d)
		}
	}
	hc := o.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	s := &Server{o: o, log: o.Logger, hc: hc}
	if o.Seed != 0 {
		s.pcg = rand.NewPCG(uint64(o.Seed), uint64(o.Seed)^0x9e3779b97f4a7c15)
	} else {
		var seed [16]byte
		_, _ = crand.Read(seed[:])
		s.pcg = rand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:]))
	}
	s.rng = rand.New(s.pcg)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.st = state{LinkTokens: map[string]*linkToken{}, PublicTokens: map[string]*publicToken{}, Items: map[string]*item{}, ByToken: map[string]string{}}
	if o.StatePath != "" {
		if err := s.load(); err != nil {
			return nil, err
		}
	}
	if len(s.keys) == 0 {
		if _, err := s.rotateLocked(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Close stops webhook deliveries, waits for them, and saves the state.
func (s *Server) Close() error {
	s.cancel()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.saveLocked()
}

func (s *Server) load() error {
	b, err := os.ReadFile(s.o.StatePath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("plaidsim: load state: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("plaidsim: load state: %w", err)
	}
	for _, k := range st.Keys {
		p, err := x509.ParsePKCS8PrivateKey(k.PKCS8)
		if err != nil {
			return fmt.Errorf("plaidsim: load key %s: %w", k.Kid, err)
		}
		ek, ok := p.(*ecdsa.PrivateKey)
		if !ok {
			return fmt.Errorf("plaidsim: key %s is not ECDSA", k.Kid)
		}
		k.priv = ek
	}
	if st.LinkTokens != nil {
		s.st = st
	}
	s.keys = st.Keys
	if s.o.Seed != 0 && len(st.RNG) > 0 {
		if err := s.pcg.UnmarshalBinary(st.RNG); err != nil {
			return fmt.Errorf("plaidsim: load state: rng: %w", err)
		}
	}
	return nil
}

func (s *Server) saveLocked() error {
	if s.o.StatePath == "" {
		return nil
	}
	s.st.Keys = s.keys
	s.st.RNG = nil
	if s.o.Seed != 0 {
		rb, err := s.pcg.MarshalBinary()
		if err != nil {
			return err
		}
		s.st.RNG = rb
	}
	b, err := json.MarshalIndent(s.st, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.o.StatePath + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("plaidsim: save state: %w", err)
	}
	return os.Rename(tmp, s.o.StatePath)
}

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

func (s *Server) randStr(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alnum[s.rng.IntN(len(alnum))]
	}
	return string(b)
}

func (s *Server) uuid() string {
	var b [16]byte
	for i := range b {
		b[i] = byte(s.rng.Uint32())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// newKeyLocked makes a P-256 signing key: from crypto/rand normally, from
// the seeded stream when Options.Seed is set. (Since Go 1.26
// ecdsa.GenerateKey ignores its io.Reader, so a seeded reader passed to it
// would not make the key deterministic; the scalar is drawn here instead.)
func (s *Server) newKeyLocked() (*ecdsa.PrivateKey, error) {
	if s.o.Seed == 0 {
		return ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	}
	var d [32]byte
	for range 64 { // rejection sampling: d must be in [1, n-1]
		for i := 0; i < len(d); i += 8 {
			binary.BigEndian.PutUint64(d[i:], s.rng.Uint64())
		}
		if k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d[:]); err == nil {
			return k, nil
		}
	}
	return nil, errors.New("plaidsim: could not derive a seeded P-256 key")
}

// RotateKey makes a new signing key current; the old current key gets expired_at.
func (s *Server) RotateKey() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	kid, err := s.rotateLocked()
	if err == nil {
		err = s.saveLocked()
	}
	return kid, err
}

func (s *Server) rotateLocked() (string, error) {
	priv, err := s.newKeyLocked()
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", err
	}
	now := s.o.Now().Unix()
	if n := len(s.keys); n > 0 && s.keys[n-1].ExpiredAt == nil {
		s.keys[n-1].ExpiredAt = &now
	}
	k := &sigKey{Kid: s.uuid(), PKCS8: der, CreatedAt: now, priv: priv}
	s.keys = append(s.keys, k)
	return k.Kid, nil
}

// ServeHTTP routes Plaid's endpoints and the emulator's /__emu/ ones.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/__emu/") {
		s.serveEmu(w, r)
		return
	}
	h := route(r.URL.Path)
	if h == nil {
		s.writeErr(w, perr(http.StatusNotFound, "INVALID_REQUEST", "NOT_FOUND", "unknown endpoint "+r.URL.Path))
		return
	}
	if r.Method != http.MethodPost {
		s.writeErr(w, perr(http.StatusMethodNotAllowed, "INVALID_REQUEST", "INVALID_HTTP_METHOD", "only POST is supported"))
		return
	}
	ct := r.Header.Get("Content-Type")
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	if !strings.EqualFold(strings.TrimSpace(ct), "application/json") {
		s.writeErr(w, errInvalidBody())
		return
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		s.writeErr(w, errInvalidBody())
		return
	}
	var body map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&body); err != nil || body == nil {
		s.writeErr(w, errInvalidBody())
		return
	}
	id, sec := r.Header.Get("PLAID-CLIENT-ID"), r.Header.Get("PLAID-SECRET")
	if v, ok := body["client_id"].(string); ok && v != "" {
		id = v
	}
	if v, ok := body["secret"].(string); ok && v != "" {
		sec = v
	}
	if id != s.o.ClientID || sec != s.o.Secret {
		s.writeErr(w, errAPIKeys())
		return
	}
	resp, aerr := h(s, req(body))
	if aerr != nil {
		s.writeErr(w, aerr)
		return
	}
	s.writeOK(w, resp)
}

func (s *Server) requestID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.randStr(15)
}

func (s *Server) writeOK(w http.ResponseWriter, resp map[string]any) {
	resp["request_id"] = s.requestID()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(resp)
}

func (s *Server) writeErr(w http.ResponseWriter, e *apiError) {
	body := map[string]any{
		"error_type": e.Type, "error_code": e.Code, "error_message": e.Message,
		"display_message": e.Display, "request_id": s.requestID(),
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(body)
}

// req is a decoded request body with typed accessors.
type req map[string]any

func (r req) str(k string) string { v, _ := r[k].(string); return v }

func (r req) strs(k string) ([]string, bool) {
	a, ok := r[k].([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(a))
	for _, v := range a {
		s, ok := v.(string)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

func (r req) obj(k string) req { m, _ := r[k].(map[string]any); return req(m) }

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }
