package plaidsim

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// The offline stand-in for Plaid Link's JavaScript: a drop-in for
// https://cdn.plaid.com/link/v2/stable/link-initialize.js and the Link UI it
// opens in an iframe. Paths, all under /__emu/link/:
//
//	GET  v2/stable/link-initialize.js  window.Plaid.create(...) → {open, exit, submit, destroy}
//	GET  ui?token=&origin=&id=          the Link UI page (iframe)
//	GET  ui/link-ui.js, ui/link.css     its script and style
//	POST ui/credentials                 {link_token, institution_id, username, password} → {accounts}
//	POST ui/complete                    the same + account_ids → {public_token}
//
// Errors from the two POSTs are {"error": <Plaid error object>} with the
// status Plaid would use.

//go:embed linkui
var linkUIFiles embed.FS

// LinkScriptPath is where the emulator serves its link-initialize.js.
const LinkScriptPath = "/__emu/link/v2/stable/link-initialize.js"

var linkUIPage = template.Must(template.ParseFS(linkUIFiles, "linkui/link.html"))

// sandboxInstitutions are Plaid's documented non-OAuth sandbox institutions.
var sandboxInstitutions = []institution{
	{"ins_109508", "First Platypus Bank"},
	{"ins_109509", "First Gingham Credit Union"},
	{"ins_109510", "Tattersall Federal Credit Union"},
	{"ins_109511", "Tartan Bank"},
	{"ins_109512", "Houndstooth Bank"},
	{"ins_116834", "Flexible Platypus Open Banking (QA)"},
}

type institution struct {
	ID   string `json:"institution_id"`
	Name string `json:"name"`
}

func institutionName(id string) string {
	for _, i := range sandboxInstitutions {
		if i.ID == id {
			return i.Name
		}
	}
	return "Institution " + id
}

type linkAccount struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Mask    string `json:"mask"`
	Type    string `json:"type"`
	Subtype string `json:"subtype"`
}

// sandboxAccounts are user_good's accounts in Plaid's sandbox. Their ids are
// derived from the institution and item key, so they are stable across an
// update-mode session of the same item.
func sandboxAccounts(inst, key string) []linkAccount {
	base := []linkAccount{
		{Name: "Plaid Checking", Mask: "0000", Type: "depository", Subtype: "checking"},
		{Name: "Plaid Saving", Mask: "1111", Type: "depository", Subtype: "savings"},
		{Name: "Plaid CD", Mask: "2222", Type: "depository", Subtype: "cd"},
		{Name: "Plaid Credit Card", Mask: "3333", Type: "credit", Subtype: "credit card"},
	}
	for i := range base {
		sum := sha256.Sum256([]byte(inst + "|" + key + "|" + base[i].Mask))
		id := make([]byte, 37)
		for j := range id {
			id[j] = alnum[int(sum[j%len(sum)]+byte(j))%len(alnum)]
		}
		base[i].ID = string(id)
	}
	return base
}

// sandboxLoginErrors are the errors Plaid's sandbox returns for username
// user_good with password "error_<CODE>" (Plaid's "Error testing
// credentials"). Messages are the emulator's wording of Plaid's.
var sandboxLoginErrors = map[string][3]string{ // code → type, message, display message
	"INVALID_CREDENTIALS":             {"ITEM_ERROR", "the provided credentials were not correct", "The provided credentials were not correct. Please try again."},
	"INVALID_MFA":                     {"ITEM_ERROR", "the provided MFA response(s) were not correct", "The provided MFA responses were not correct. Please try again."},
	"INVALID_SEND_METHOD":             {"ITEM_ERROR", "the provided MFA send_method was invalid", "The chosen method to receive a code is not available. Please try another."},
	"INSUFFICIENT_CREDENTIALS":        {"ITEM_ERROR", "insufficient authorization was provided to complete the request", "Not enough information was provided to log in. Please try again."},
	"ITEM_LOCKED":                     {"ITEM_ERROR", "the account is locked. prompt the user to visit the institution's site and unlock their account", "The given credentials belong to a locked account. Please reset your credentials with your bank and try again."},
	"ITEM_NOT_SUPPORTED":              {"ITEM_ERROR", "this account is currently not supported", "The given account is not currently supported for this institution."},
	"MFA_NOT_SUPPORTED":               {"ITEM_ERROR", "this account requires a software-based MFA method, which is not supported", "This account uses a login method that is not supported. Please try another account."},
	"NO_ACCOUNTS":                     {"ITEM_ERROR", "no valid accounts were found for this item", "No valid accounts were found at the institution. Please log in to your bank to confirm you have at least one account."},
	"USER_SETUP_REQUIRED":             {"ITEM_ERROR", "the account has not been fully set up. prompt the user to visit the issuing institution's site and finish the setup process", "Your account needs additional setup at your bank. Please log in to your bank's website and try again."},
	"PASSWORD_RESET_REQUIRED":         {"ITEM_ERROR", "the user must log in to the institution's site and reset their password", "You need to reset your password with your bank. Please do so and try again."},
	"INSTITUTION_DOWN":                {"INSTITUTION_ERROR", "this institution is not currently responding to this request. please try again soon", "This financial institution is not currently responding. Please try again later."},
	"INSTITUTION_NOT_RESPONDING":      {"INSTITUTION_ERROR", "this institution is not currently responding to this request. please try again soon", "This financial institution is not currently responding. Please try again later."},
	"INSTITUTION_NOT_AVAILABLE":       {"INSTITUTION_ERROR", "this institution is not available", "This financial institution is not available right now. Please try again later."},
	"INSTITUTION_NO_LONGER_SUPPORTED": {"INSTITUTION_ERROR", "this institution is no longer supported", "This financial institution is no longer supported."},
	"INTERNAL_SERVER_ERROR":           {"API_ERROR", "an unexpected error occurred", "Something went wrong. Please try again later."},
}

// checkSandboxLogin applies Plaid's sandbox credentials: user_good /
// pass_good succeeds; user_good / error_<CODE> fails with that error;
// anything else is INVALID_CREDENTIALS.
func checkSandboxLogin(username, password string) *apiError {
	code := "INVALID_CREDENTIALS"
	if username == "user_good" {
		if password == "pass_good" {
			return nil
		}
		if c, ok := strings.CutPrefix(password, "error_"); ok {
			if _, known := sandboxLoginErrors[c]; known {
				code = c
			}
		}
	}
	e := sandboxLoginErrors[code]
	status := http.StatusBadRequest
	if e[0] == "API_ERROR" {
		status = http.StatusInternalServerError
	}
	d := e[2]
	return &apiError{status: status, Type: e[0], Code: code, Message: e[1], Display: &d}
}

// linkBoot is what the Link UI page starts from.
type linkBoot struct {
	ID            string         `json:"id"`
	ParentOrigin  string         `json:"parent_origin"`
	Token         string         `json:"token"`
	LinkSessionID string         `json:"link_session_id"`
	ClientName    string         `json:"client_name"`
	UpdateMode    bool           `json:"update_mode"`
	Institution   *institution   `json:"institution"`
	Institutions  []institution  `json:"institutions"`
	Error         map[string]any `json:"error"`
}

func (e *apiError) object() map[string]any {
	return map[string]any{"error_type": e.Type, "error_code": e.Code, "error_message": e.Message, "display_message": e.Display}
}

func (s *Server) serveLinkUI(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == LinkScriptPath && r.Method == http.MethodGet:
		s.serveLinkScript(w, r)
	case r.URL.Path == "/__emu/link/ui" && r.Method == http.MethodGet:
		s.serveLinkPage(w, r)
	case (r.URL.Path == "/__emu/link/ui/link-ui.js" || r.URL.Path == "/__emu/link/ui/link.css") && r.Method == http.MethodGet:
		name := strings.TrimPrefix(r.URL.Path, "/__emu/link/ui/")
		b, _ := linkUIFiles.ReadFile("linkui/" + name)
		ct := "text/css; charset=utf-8"
		if strings.HasSuffix(name, ".js") {
			ct = "text/javascript; charset=utf-8"
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(b)
	case (r.URL.Path == "/__emu/link/ui/credentials" || r.URL.Path == "/__emu/link/ui/complete") && r.Method == http.MethodPost:
		s.serveLinkStep(w, r, strings.TrimPrefix(r.URL.Path, "/__emu/link/ui/"))
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown emulator endpoint"})
	}
}

// serveLinkScript serves link-initialize.js with the emulator's own origin
// written in, as the browser reached it.
func (s *Server) serveLinkScript(w http.ResponseWriter, r *http.Request) {
	b, _ := linkUIFiles.ReadFile("linkui/link-initialize.js")
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	origin, _ := json.Marshal(scheme + "://" + r.Host)
	b = bytes.Replace(b, []byte("__EMULATOR_ORIGIN__"), origin, 1)
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	_, _ = w.Write(b)
}

func (s *Server) serveLinkPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	origin := q.Get("origin")
	if u, err := url.Parse(origin); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" {
		http.Error(w, "origin must be the opening page's origin", http.StatusBadRequest)
		return
	}
	boot := linkBoot{ID: q.Get("id"), ParentOrigin: origin, Token: q.Get("token"), Institutions: sandboxInstitutions}
	s.mu.Lock()
	boot.LinkSessionID = s.uuid()
	lt := s.st.LinkTokens[boot.Token]
	switch {
	case lt == nil || s.now().After(lt.Expiration):
		boot.ClientName = "This Application"
		boot.Error = errLinkToken().object()
	default:
		boot.ClientName = lt.ClientName
		if lt.AccessToken != "" {
			boot.UpdateMode = true
			if it := s.st.Items[s.st.ByToken[lt.AccessToken]]; it != nil {
				boot.Institution = &institution{ID: it.InstitutionID, Name: institutionName(it.InstitutionID)}
			} else {
				boot.Error = errLinkToken().object()
			}
		}
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = linkUIPage.Execute(w, boot)
}

// serveLinkStep checks the credentials (step "credentials") or checks them
// again and completes the link token (step "complete").
func (s *Server) serveLinkStep(w http.ResponseWriter, r *http.Request, step string) {
	var in struct {
		LinkToken     string   `json:"link_token"`
		InstitutionID string   `json:"institution_id"`
		Username      string   `json:"username"`
		Password      string   `json:"password"`
		AccountIDs    []string `json:"account_ids"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&in); err != nil {
		writeLinkErr(w, errInvalidBody())
		return
	}
	s.mu.Lock()
	lt := s.st.LinkTokens[in.LinkToken]
	valid := lt != nil && !s.now().After(lt.Expiration)
	key := in.LinkToken
	if valid && lt.AccessToken != "" {
		if it := s.st.Items[s.st.ByToken[lt.AccessToken]]; it != nil {
			in.InstitutionID, key = it.InstitutionID, it.ItemID
		}
	}
	s.mu.Unlock()
	if !valid {
		writeLinkErr(w, errLinkToken())
		return
	}
	if !insRE.MatchString(in.InstitutionID) {
		writeLinkErr(w, errInstitution())
		return
	}
	if e := checkSandboxLogin(in.Username, in.Password); e != nil {
		writeLinkErr(w, e)
		return
	}
	if step == "credentials" {
		writeJSON(w, http.StatusOK, map[string]any{"accounts": sandboxAccounts(in.InstitutionID, key)})
		return
	}
	if len(in.AccountIDs) == 0 {
		writeLinkErr(w, invalidField("select at least one account"))
		return
	}
	pt, err := s.CompleteLink(in.LinkToken, in.InstitutionID, in.Username)
	switch {
	case errors.Is(err, ErrInstitution):
		writeLinkErr(w, errInstitution())
	case err != nil:
		writeLinkErr(w, errLinkToken())
	default:
		writeJSON(w, http.StatusOK, map[string]string{"public_token": pt})
	}
}

func writeLinkErr(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, map[string]any{"error": e.object()})
}
