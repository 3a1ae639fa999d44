package plaidsim

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Fault makes a delivery deliberately wrong, for negative tests.
type Fault int

// Faults.
const (
	FaultNone         Fault = iota
	FaultDuplicate          // deliver the same body twice (each attempt re-signed)
	FaultWrongKey           // signed by a key Plaid never published, with the current kid
	FaultWrongAlg           // HS256 keyed with the public key's x coordinate (algorithm confusion)
	FaultStaleIAT           // iat 10 minutes in the past
	FaultTamperedBody       // body changed after signing
	FaultUnknownKid         // signed by an unknown key with an unknown kid
)

// Delivery is one webhook delivery attempt, as logged by the emulator.
type Delivery struct {
	URL          string    `json:"url"`
	ItemID       string    `json:"item_id"`
	Body         string    `json:"body"`
	Verification string    `json:"plaid_verification"`
	Status       int       `json:"status"` // 0 when the request failed
	Error        string    `json:"error,omitempty"`
	Attempt      int       `json:"attempt"`
	Fault        Fault     `json:"fault"`
	At           time.Time `json:"at"`
}

func jwk(k *sigKey) map[string]any {
	pub, err := k.priv.PublicKey.Bytes() // 0x04 ‖ X ‖ Y
	if err != nil || len(pub) != 65 {
		// Cannot happen for a generated P-256 key; the zero point verifies nothing.
		pub = make([]byte, 65)
	}
	var exp any
	if k.ExpiredAt != nil {
		exp = *k.ExpiredAt
	}
	return map[string]any{
		"alg": "ES256", "crv": "P-256", "kid": k.Kid, "kty": "EC", "use": "sig",
		"x":          base64.RawURLEncoding.EncodeToString(pub[1:33]),
		"y":          base64.RawURLEncoding.EncodeToString(pub[33:65]),
		"created_at": k.CreatedAt, "expired_at": exp,
	}
}

// FormatBody formats a webhook body exactly as Plaid does: keys sorted,
// 2-space indent, no trailing newline.
func FormatBody(body map[string]any) ([]byte, error) { return json.MarshalIndent(body, "", "  ") }

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// sign builds the Plaid-Verification JWT for body under the current key.
func (s *Server) sign(body []byte, f Fault) (string, error) {
	s.mu.Lock()
	cur := s.keys[len(s.keys)-1]
	now := s.now()
	x := jwk(cur)["x"].(string)
	s.mu.Unlock()
	kid, priv := cur.Kid, cur.priv
	iat := now.Unix()
	switch f {
	case FaultStaleIAT:
		iat -= 600
	case FaultWrongKey, FaultUnknownKid:
		k, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
		if err != nil {
			return "", err
		}
		priv = k
		if f == FaultUnknownKid {
			kid = "00000000-dead-beef-0000-" + strconv.FormatInt(now.UnixNano()%1e12, 10)
		}
	}
	sum := sha256.Sum256(body)
	payload := `{"iat":` + strconv.FormatInt(iat, 10) + `,"request_body_sha256":"` + hex.EncodeToString(sum[:]) + `"}`
	if f == FaultWrongAlg {
		in := b64([]byte(`{"alg":"HS256","kid":"`+kid+`","typ":"JWT"}`)) + "." + b64([]byte(payload))
		m := hmac.New(sha256.New, []byte(x))
		m.Write([]byte(in))
		return in + "." + b64(m.Sum(nil)), nil
	}
	in := b64([]byte(`{"alg":"ES256","kid":"`+kid+`","typ":"JWT"}`)) + "." + b64([]byte(payload))
	h := sha256.Sum256([]byte(in))
	r, ss, err := ecdsa.Sign(crand.Reader, priv, h[:])
	if err != nil {
		return "", err
	}
	return in + "." + b64(append(r.FillBytes(make([]byte, 32)), ss.FillBytes(make([]byte, 32))...)), nil
}

// deliverOnce posts one signed attempt and logs it. It returns the status
// (0 on transport error) and any Retry-After.
func (s *Server) deliverOnce(ctx context.Context, url, itemID string, body []byte, f Fault, attempt int) (int, time.Duration) {
	jwt, err := s.sign(body, f)
	d := Delivery{URL: url, ItemID: itemID, Body: string(body), Verification: jwt, Attempt: attempt, Fault: f, At: s.now()}
	send := body
	if f == FaultTamperedBody {
		send = bytes.Replace(body, []byte(`"item_id"`), []byte(`"item_id" `), 1)
		d.Body = string(send)
	}
	var retryAfter time.Duration
	if err == nil {
		var req *http.Request
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(send))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Plaid-Verification", jwt)
			req.Header.Set("User-Agent", "Plaid Verifier")
			var resp *http.Response
			resp, err = s.hc.Do(req)
			if err == nil {
				d.Status = resp.StatusCode
				if resp.StatusCode == http.StatusTooManyRequests {
					if sec, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && sec > 0 {
						retryAfter = min(time.Duration(sec)*time.Second, 4*time.Hour)
					}
				}
				resp.Body.Close()
			}
		}
	}
	if err != nil {
		d.Error = err.Error()
	}
	s.mu.Lock()
	s.deliv = append(s.deliv, d)
	if it := s.st.Items[itemID]; it != nil && d.Status == http.StatusOK {
		var b struct {
			Code string `json:"webhook_code"`
		}
		_ = json.Unmarshal(body, &b)
		it.LastWebhook, it.LastWebhookAt = b.Code, d.At
	}
	s.mu.Unlock()
	return d.Status, retryAfter
}

// deliver runs Plaid's schedule from attempt number start+1: attempt 1 is
// sent at once; attempt n > 1 is sent after RetryDelays[n-2] (scaled), or
// after the receiver's Retry-After (retryAfter, for the attempt made before
// start) when it asked for one. It stops at the first 200 or when the
// schedule ends.
func (s *Server) deliver(url, itemID string, body []byte, start int, retryAfter time.Duration) {
	defer s.wg.Done()
	for i := start; ; i++ {
		if i > 0 {
			if i > len(s.o.RetryDelays) {
				return
			}
			d := s.o.RetryDelays[i-1]
			if retryAfter > 0 {
				d = retryAfter
			}
			t := time.NewTimer(time.Duration(float64(d) * s.o.TimeScale))
			select {
			case <-s.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		var st int
		st, retryAfter = s.deliverOnce(s.ctx, url, itemID, body, FaultNone, i+1)
		if st == http.StatusOK {
			return
		}
	}
}

// fire delivers an event to the item's webhook asynchronously, with retries.
func (s *Server) fire(itemID string, body map[string]any) {
	s.mu.Lock()
	it := s.st.Items[itemID]
	url := ""
	if it != nil {
		url = it.Webhook
	}
	s.mu.Unlock()
	b, err := FormatBody(body)
	if url == "" || err != nil || s.ctx.Err() != nil {
		return
	}
	s.wg.Add(1)
	go s.deliver(url, itemID, b, 0, 0)
}

// SendWebhook delivers body to the item's webhook URL now, with fault f.
// With FaultNone a failed first attempt is retried in the background on
// Plaid's schedule; faulty deliveries are never retried. It returns an error
// when the (last synchronous) attempt was not answered 200.
func (s *Server) SendWebhook(ctx context.Context, itemID string, body map[string]any, f Fault) error {
	s.mu.Lock()
	it := s.st.Items[itemID]
	url := ""
	if it != nil {
		url = it.Webhook
	}
	s.mu.Unlock()
	if url == "" {
		return fmt.Errorf("plaidsim: item %q has no webhook URL", itemID)
	}
	b, err := FormatBody(body)
	if err != nil {
		return err
	}
	n := 1
	if f == FaultDuplicate {
		n = 2
	}
	var st int
	var ra time.Duration
	for range n {
		ff := f
		if f == FaultDuplicate {
			ff = FaultNone
		}
		st, ra = s.deliverOnce(ctx, url, itemID, b, ff, 1)
	}
	if st != http.StatusOK {
		if f == FaultNone && s.ctx.Err() == nil {
			s.wg.Add(1)
			go s.deliver(url, itemID, b, 1, ra)
		}
		return fmt.Errorf("plaidsim: webhook answered %d", st)
	}
	return nil
}

// Deliveries returns a copy of the delivery log.
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Delivery(nil), s.deliv...)
}
