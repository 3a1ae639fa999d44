package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html/template"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// Options configure the app's upstream server.
type Options struct {
	// Dist is the directory holding the esbuild bundle (app.js, app.js.map).
	Dist string
	// SessionKey signs session JWTs (HS256); the tenant's auth plugin has
	// the same key as its secret. Required.
	SessionKey []byte
	// Issuer and Audience go into every session JWT; the plugin's jwt config
	// checks them. Empty means "safeclose-webapp" and "webapp".
	Issuer, Audience string
	// SessionTTL is how long a session lasts. Zero means 8h.
	SessionTTL time.Duration
	// LinkScript, DEV ONLY, is the URL of the Plaid emulator's
	// link-initialize.js. When set, the page loads it before the bundle and
	// marks Plaid's CDN script as present (a <script type="text/plain"> the
	// browser never fetches), so react-plaid-link finds window.Plaid without
	// going to cdn.plaid.com. Empty means the page is what production
	// serves: react-plaid-link loads Plaid's CDN script itself.
	LinkScript string
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// plaidLinkCDN is the URL react-plaid-link loads Plaid Link from.
const plaidLinkCDN = "https://cdn.plaid.com/link/v2/stable/link-initialize.js"

// plaidCDNOrigin is the origin of plaidLinkCDN.
const plaidCDNOrigin = "https://cdn.plaid.com"

// Headers Safeclose sets on every request it proxies (client copies are
// stripped). The app trusts them because it listens on loopback only and
// Safeclose is its one client.
const (
	headerUser   = "X-Safeclose-User"
	headerPublic = "X-Safeclose-Claim-Public" // set by the auth plugin for signed-out requests to public routes
	cookieName   = "session"
)

var userRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

var indexPage = template.Must(template.New("index").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>Acme Budget — a Safeclose demo</title>
<style>
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#17202a;background:#f4f6f8;margin:0}
main{max-width:640px;margin:32px auto;padding:0 16px}
header{display:flex;justify-content:space-between;align-items:center}
h1{font-size:26px;margin:8px 0 16px}h2{font-size:18px;margin:0 0 10px}
.card{background:#fff;border-radius:12px;padding:20px;box-shadow:0 1px 4px rgba(0,0,0,.08);margin-bottom:16px}
.muted{color:#66707a;font-size:13px}
input{padding:9px 10px;border:1px solid #c6ccd2;border-radius:7px;font-size:15px;margin:0 8px 0 4px}
button{padding:8px 14px;border-radius:7px;border:1px solid #c6ccd2;background:#fff;font-size:14px;cursor:pointer}
button.primary,form button{background:#17202a;color:#fff;border-color:#17202a}
button:disabled{opacity:.5;cursor:default}
.items{list-style:none;padding:0;margin:0 0 14px}
.items li{display:flex;gap:12px;align-items:center;padding:10px 0;border-bottom:1px solid #eef0f2}
.inst{flex:1;font-weight:600}.inst code{display:block;font-weight:400;font-size:11px}
.state{font-size:13px;padding:2px 9px;border-radius:10px;background:#e7f6ee;color:#0a6b3b}
.state.login_required,.state.revoked{background:#fdecea;color:#8a1c12}
.state.pending_expiration,.state.pending_disconnect{background:#fff4e0;color:#8a5a00}
.error{color:#8a1c12}.notice{color:#0a6b3b}
</style>
{{if .LinkScript}}<!-- DEV ONLY (make demo): the Plaid emulator's Link script instead of Plaid's CDN. -->
<script src="{{.LinkScript}}"></script>
<script type="text/plain" src="{{.CDN}}" data-plaidsim="placeholder: react-plaid-link sees Plaid's script as loaded; never fetched"></script>
{{end}}<script src="/app.js" defer></script>
</head><body><div id="root"></div></body></html>
`))

type server struct {
	o Options
}

func newHandler(o Options) (http.Handler, error) {
	if len(o.SessionKey) < 32 {
		return nil, errors.New("webapp: the session key must be at least 32 bytes")
	}
	if o.Issuer == "" {
		o.Issuer = "safeclose-webapp"
	}
	if o.Audience == "" {
		o.Audience = "webapp"
	}
	if o.SessionTTL == 0 {
		o.SessionTTL = 8 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &server{o: o}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.index)
	mux.HandleFunc("GET /app.js", s.asset("app.js", "text/javascript; charset=utf-8"))
	mux.HandleFunc("GET /app.js.map", s.asset("app.js.map", "application/json"))
	mux.HandleFunc("POST /signin", s.signin)
	mux.HandleFunc("POST /signout", s.signout)
	mux.HandleFunc("GET /api/me", s.me)
	// Cross-origin POSTs are refused (403): a form on another site posting
	// {"user": ATTACKER} as text/plain to /signin would sign the victim in
	// as the attacker (login CSRF), and the bank they connect next would be
	// the attacker's. SameSite=Lax does not stop it: the answer is a
	// top-level navigation, so its cookie is kept.
	return nosniff(http.NewCrossOriginProtection().Handler(mux)), nil
}

// nosniff keeps browsers from reading any answer of the app as another
// type than it says (a JSON error echoing input run as HTML or script).
func nosniff(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}

// csp is the page's Content-Security-Policy: scripts from the app and
// Plaid's CDN only (the whole origin: link-initialize.js is not versioned,
// and what else it loads is Plaid's to change; the DEV-ONLY emulator
// script too when set), no plugins, no <base>, forms post to the app only,
// and no other site may frame the page (clickjacking "Connect a bank").
// Frames and fetches are left open: Link frames and calls Plaid.
func (s *server) csp() string {
	src := "'self' " + plaidCDNOrigin
	if s.o.LinkScript != "" {
		src += " " + s.o.LinkScript
	}
	return "script-src " + src + "; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
}

func (s *server) index(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", s.csp())
	w.Header().Set("X-Frame-Options", "DENY") // browsers without frame-ancestors
	_ = indexPage.Execute(w, map[string]string{"LinkScript": s.o.LinkScript, "CDN": plaidLinkCDN})
}

func (s *server) asset(name, ct string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := os.ReadFile(filepath.Join(s.o.Dist, name))
		if err != nil {
			writeErr(w, http.StatusNotFound, "not_built", "the bundle is not built: run `make webapp`")
			return
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(b)
	}
}

// signedIn returns the user Safeclose authenticated, or "" for a request
// the auth plugin let through as signed out.
func signedIn(r *http.Request) string {
	if r.Header.Get(headerPublic) == "true" {
		return ""
	}
	return r.Header.Get(headerUser)
}

func (s *server) me(w http.ResponseWriter, r *http.Request) {
	u := signedIn(r)
	if u == "" {
		writeErr(w, http.StatusUnauthorized, "unauthenticated", "sign in first")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"user": u})
}

// signin is the demo's sign-in: any well-formed name, no password. It mints
// the session JWT the auth plugin verifies and sets it as an HttpOnly cookie.
func (s *server) signin(w http.ResponseWriter, r *http.Request) {
	var in struct {
		User string `json:"user"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&in); err != nil {
		writeErr(w, http.StatusBadRequest, "invalid_json", "body must be {\"user\": NAME}")
		return
	}
	if !userRE.MatchString(in.User) || in.User == "anonymous" {
		writeErr(w, http.StatusBadRequest, "invalid_user", "a name is 1-32 of a-z, 0-9, _ and -, starting with a letter")
		return
	}
	now := s.o.Now()
	tok, err := signHS256(s.o.SessionKey, map[string]any{
		"sub": in.User, "iss": s.o.Issuer, "aud": s.o.Audience,
		"iat": now.Unix(), "exp": now.Add(s.o.SessionTTL).Unix(),
	})
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal", "could not sign the session")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: tok, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: r.Header.Get("X-Forwarded-Proto") == "https", MaxAge: int(s.o.SessionTTL / time.Second),
	})
	writeJSON(w, http.StatusOK, map[string]string{"user": in.User})
}

func (s *server) signout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, MaxAge: -1})
	writeJSON(w, http.StatusOK, map[string]bool{"signed_out": true})
}

// signHS256 makes a compact HS256 JWT.
func signHS256(key []byte, claims map[string]any) (string, error) {
	c, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	s := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + base64.RawURLEncoding.EncodeToString(c)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	return s + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil)), nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}
