package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pki issues certificates from a throwaway CA into dir.
type pki struct {
	t    *testing.T
	dir  string
	key  *ecdsa.PrivateKey
	ca   *x509.Certificate
	pool *x509.CertPool
	n    int64
}

func newPKI(t *testing.T) *pki {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &pki{t: t, dir: t.TempDir(), key: key, ca: ca, pool: pool, n: 1}
}

// issue writes a certificate for host (CN = cn) to certFile/keyFile,
// replacing them atomically.
func (p *pki) issue(certFile, keyFile, cn string, hosts ...string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p.n++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(p.n), Subject: pkix.Name{CommonName: cn}, DNSNames: hosts,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		p.t.Fatal(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	p.write(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	p.write(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}))
}

func (p *pki) write(path string, b []byte) {
	if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
		p.t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		p.t.Fatal(err)
	}
}

func (p *pki) servedCN(addr, sni string) string {
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: sni, RootCAs: p.pool})
	if err != nil {
		return "error: " + err.Error()
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// Issue 13.1: `safeclose serve` with a tls block serves the tenant's
// certificate by SNI, redirects plain HTTP with 308, reloads a renewed
// certificate (file watch and SIGHUP) while a kept-alive connection keeps
// working, and refuses a bad one, keeping the old. Issue 13.2: the answer
// carries X-Request-Id and the access log has the line.
func TestServeTLS(t *testing.T) {
	for _, mode := range []string{"watch", "sighup"} {
		t.Run(mode, func(t *testing.T) { serveTLS(t, mode) })
	}
}

func serveTLS(t *testing.T, mode string) {
	p := newPKI(t)
	dir := p.dir
	defCert, defKey := filepath.Join(dir, "default.crt"), filepath.Join(dir, "default.key")
	aCert, aKey := filepath.Join(dir, "a.crt"), filepath.Join(dir, "a.key")
	p.issue(defCert, defKey, "default", "default.test")
	p.issue(aCert, aKey, "a-1", "a.test")
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("X-Safeclose-User")+" "+r.Header.Get("X-Request-Id"))
	}))
	defer app.Close()
	t.Setenv("TLS_TEST_PLAID", "x")
	sum := sha256.Sum256([]byte("a-key"))
	cfg := filepath.Join(dir, "tls.yaml")
	p.write(cfg, []byte(fmt.Sprintf(`listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
data_dir: %s
tls:
  cert_file: %s
  key_file: %s
  redirect_listen: 127.0.0.1:0
tenants:
  - name: a
    hosts: [a.test]
    upstream: %s
    tls: {cert_file: %s, key_file: %s}
    plaid: {env: "http://127.0.0.1:1", client_id: env:TLS_TEST_PLAID, secret: env:TLS_TEST_PLAID}
    auth: {api_keys: [{sha256: %s, user: alice}]}
`, filepath.Join(dir, "data"), defCert, defKey, app.URL, aCert, aKey, hex.EncodeToString(sum[:]))))

	watch := "50ms"
	if mode == "sighup" {
		watch = "0"
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out, logs syncBuf
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "-config", cfg, "-watch", watch}, &out, &logs) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	var addr, redirAddr string
	for i := 0; i < 500 && addr == ""; i++ {
		if _, rest, ok := strings.Cut(out.String(), "listening on https://"); ok {
			addr = strings.Fields(rest)[0]
		}
		time.Sleep(10 * time.Millisecond)
	}
	if addr == "" {
		t.Fatalf("serve printed no https address: %q\n%s", out.String(), logs.String())
	}
	if _, rest, ok := strings.Cut(out.String(), "redirecting http://"); ok {
		redirAddr = strings.Fields(rest)[0]
	}

	if cn := p.servedCN(addr, "a.test"); cn != "a-1" {
		t.Fatalf("SNI a.test served %q, want a-1", cn)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: p.pool, ServerName: "a.test"},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	get := func() (*http.Response, string) {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", "https://a.test/app?token=QSECRET", nil)
		req.Header.Set("Authorization", "Bearer a-key")
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET over TLS: %v", err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}
	res, body := get()
	rid := res.Header.Get("X-Request-Id")
	if res.StatusCode != 200 || len(rid) != 32 || body != "alice "+rid {
		t.Fatalf("GET = %d %q (X-Request-Id %q)", res.StatusCode, body, rid)
	}
	// The access log is written asynchronously: wait for the line.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !strings.Contains(logs.String(), rid); {
		time.Sleep(10 * time.Millisecond)
	}
	if l := logs.String(); !strings.Contains(l, `"msg":"request"`) || !strings.Contains(l, `"request_id":"`+rid+`"`) ||
		strings.Contains(l, "a-key") || strings.Contains(l, "QSECRET") {
		t.Errorf("access log line missing or leaking:\n%s", l)
	}

	// Each certificate's end is on /metrics, to alert on.
	if _, rest, ok := strings.Cut(out.String(), "(admin http://"); !ok {
		t.Fatalf("serve printed no admin address: %q", out.String())
	} else if mres, err := http.Get("http://" + strings.TrimSuffix(strings.Fields(rest)[0], ")") + "/metrics"); err != nil {
		t.Fatal(err)
	} else {
		mb, _ := io.ReadAll(mres.Body)
		mres.Body.Close()
		if want := `safeclose_tls_certificate_not_after_seconds{cert_file="` + aCert + `",tenant="a"}`; !strings.Contains(string(mb), want) {
			t.Errorf("/metrics has no %s", want)
		}
	}

	// Redirect listener.
	if redirAddr == "" {
		t.Fatalf("no redirect listener printed: %q", out.String())
	}
	req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://"+redirAddr+"/x?y=1", nil)
	req.Host = "a.test:8080"
	rr, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rr.Body.Close()
	_, port, _ := net.SplitHostPort(addr)
	if rr.StatusCode != 308 || rr.Header.Get("Location") != "https://a.test:"+port+"/x?y=1" {
		t.Errorf("redirect = %d %q", rr.StatusCode, rr.Header.Get("Location"))
	}

	trigger := func() {
		if mode == "sighup" {
			if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitCN := func(want string) {
		t.Helper()
		for i := 0; i < 300; i++ {
			if p.servedCN(addr, "a.test") == want {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("SNI a.test never served %q (serves %q)\n%s", want, p.servedCN(addr, "a.test"), logs.String())
	}

	// A renewed certificate is picked up; the kept-alive connection, made
	// with the old one, keeps working.
	p.issue(aCert, aKey, "a-2", "a.test")
	trigger()
	waitCN("a-2")
	if res, _ := get(); res.StatusCode != 200 || res.TLS.PeerCertificates[0].Subject.CommonName != "a-1" {
		t.Errorf("kept-alive connection after reload: %d, certificate %q (want the old connection's a-1)",
			res.StatusCode, res.TLS.PeerCertificates[0].Subject.CommonName)
	}

	// A broken certificate is refused, naming the file; a-2 keeps serving.
	p.write(aCert, []byte("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n"))
	trigger()
	for i := 0; i < 300 && !strings.Contains(logs.String(), "tls reload refused"); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if l := logs.String(); !strings.Contains(l, "tls reload refused") || !strings.Contains(l, aCert) {
		t.Errorf("no refusal naming %s in the log:\n%s", aCert, l)
	}
	if cn := p.servedCN(addr, "a.test"); cn != "a-2" {
		t.Errorf("after a refused reload SNI a.test served %q, want a-2", cn)
	}
}
