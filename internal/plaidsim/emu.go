package plaidsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"slices"
	"strings"
)

// Errors from CompleteLink.
var (
	ErrLinkToken   = errors.New("plaidsim: invalid or expired link token")
	ErrCredentials = errors.New("plaidsim: invalid sandbox credentials")
	ErrInstitution = errors.New("plaidsim: invalid institution_id")
)

// CompleteLink does what a user does in Plaid Link: it completes linkToken at
// institutionID with a sandbox username (user_good succeeds). A normal token
// yields a new item and its public token; an update-mode token clears the
// item's login error and yields a public token for the same item (which Plaid
// apps need not exchange).
func (s *Server) CompleteLink(linkToken, institutionID, username string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lt := s.st.LinkTokens[linkToken]
	if lt == nil || s.now().After(lt.Expiration) {
		return "", ErrLinkToken
	}
	if username == "" {
		username = "user_good"
	}
	if username != "user_good" {
		return "", ErrCredentials
	}
	if lt.AccessToken != "" {
		it := s.st.Items[s.st.ByToken[lt.AccessToken]]
		if it == nil {
			return "", ErrLinkToken
		}
		it.LoginRequired = false
		pt := &publicToken{Token: "public-" + s.o.Environment + "-" + s.uuid(), ItemID: it.ItemID, CreatedAt: s.now()}
		s.st.PublicTokens[pt.Token] = pt
		s.addSessionLocked(lt, pt.Token, it.InstitutionID)
		_ = s.saveLocked()
		return pt.Token, nil
	}
	if !insRE.MatchString(institutionID) {
		return "", ErrInstitution
	}
	pt := s.newItem(institutionID, lt.Products, lt.Webhook)
	s.addSessionLocked(lt, pt, institutionID)
	_ = s.saveLocked()
	return pt, nil
}

// addSessionLocked records a finished Link session on its link token, so
// /link/token/get reports the public token it produced; s.mu must be held.
func (s *Server) addSessionLocked(lt *linkToken, publicToken, institutionID string) {
	now := s.now()
	lt.Sessions = append(lt.Sessions, &linkSession{
		ID: s.uuid(), StartedAt: now, FinishedAt: now, PublicToken: publicToken, InstitutionID: institutionID,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

var linkPage = template.Must(template.New("link").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Plaid Link (local emulator)</title></head>
<body style="font-family:sans-serif;max-width:32em;margin:3em auto">
<h1>Plaid Link — local emulator</h1>
<p>This page stands in for Plaid Link, which cannot load offline.</p>
<form method="post" action="/__emu/link">
<input type="hidden" name="token" value="{{.Token}}">
<p><label>Institution <input name="institution_id" value="ins_109508"></label></p>
<p><label>Username <input name="username" value="user_good"></label> (password: pass_good)</p>
<p><button type="submit">Continue</button></p>
</form>
{{if .Public}}<p>public_token: <code id="public_token">{{.Public}}</code></p>{{end}}
{{if .Err}}<p style="color:#a00">{{.Err}}</p>{{end}}
</body></html>`))

func (s *Server) serveEmu(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasPrefix(r.URL.Path, "/__emu/link/v2/") || strings.HasPrefix(r.URL.Path, "/__emu/link/ui"):
		s.serveLinkUI(w, r) // Link's JavaScript and UI (linkui.go)
	case r.URL.Path == "/__emu/link" && r.Method == http.MethodGet:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = linkPage.Execute(w, map[string]string{"Token": r.URL.Query().Get("token")})
	case r.URL.Path == "/__emu/link" && r.Method == http.MethodPost:
		_ = r.ParseForm()
		pt, err := s.CompleteLink(r.Form.Get("token"), r.Form.Get("institution_id"), r.Form.Get("username"))
		data := map[string]string{"Token": r.Form.Get("token"), "Public": pt}
		if err != nil {
			data["Err"] = err.Error()
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(http.StatusBadRequest)
		} else {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
		}
		_ = linkPage.Execute(w, data)
	case r.URL.Path == "/__emu/link/complete" && r.Method == http.MethodPost:
		var in struct {
			LinkToken     string `json:"link_token"`
			InstitutionID string `json:"institution_id"`
			Username      string `json:"username"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&in); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body must be JSON {link_token, institution_id, username}"})
			return
		}
		if in.InstitutionID == "" {
			in.InstitutionID = "ins_109508"
		}
		pt, err := s.CompleteLink(in.LinkToken, in.InstitutionID, in.Username)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"public_token": pt})
	case r.URL.Path == "/__emu/keys/rotate" && r.Method == http.MethodPost:
		kid, err := s.RotateKey()
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"kid": kid})
	case r.URL.Path == "/__emu/item/reset_login" && r.Method == http.MethodPost:
		// The bank asks the user to log in again, for an item known only by
		// id (the access token stays in the app that holds it).
		var in struct {
			ItemID string `json:"item_id"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&in); err != nil || in.ItemID == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body must be JSON {item_id}"})
			return
		}
		s.mu.Lock()
		it := s.st.Items[in.ItemID]
		tok := ""
		if it != nil {
			tok = it.AccessToken
		}
		s.mu.Unlock()
		if tok == "" {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown item_id"})
			return
		}
		if _, e := s.sandboxResetLogin(req{"access_token": tok}); e != nil {
			writeJSON(w, e.status, e)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"reset_login": true, "item_id": in.ItemID})
	case r.URL.Path == "/__emu/deliveries" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, s.Deliveries())
	case r.URL.Path == "/__emu/webhook/send" && r.Method == http.MethodPost:
		var in struct {
			ItemID string         `json:"item_id"`
			Body   map[string]any `json:"body"`
			Fault  string         `json:"fault"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&in); err != nil || in.Body == nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body must be JSON {item_id, body, fault}"})
			return
		}
		f, ok := faultNames[strings.ToLower(in.Fault)]
		if !ok {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("unknown fault %q", in.Fault)})
			return
		}
		err := s.SendWebhook(r.Context(), in.ItemID, in.Body, f)
		out := map[string]any{"delivered": err == nil}
		if err != nil {
			out["error"] = err.Error()
		}
		writeJSON(w, http.StatusOK, out)
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown emulator endpoint"})
	}
}

var faultNames = map[string]Fault{
	"": FaultNone, "none": FaultNone, "duplicate": FaultDuplicate, "wrong_key": FaultWrongKey,
	"wrong_alg": FaultWrongAlg, "stale_iat": FaultStaleIAT, "tampered_body": FaultTamperedBody, "unknown_kid": FaultUnknownKid,
}

// ItemIDs lists the items that exist (were made by Link and not removed),
// for tests and the admin: it shows what Plaid would bill for.
func (s *Server) ItemIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.st.Items))
	for id := range s.st.Items {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}
