package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA is a throwaway CA that issues leaf certificates into a temp dir.
type testCA struct {
	t    testing.TB
	dir  string
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	pool *x509.CertPool
	n    int64
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "safeclose test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{t: t, dir: t.TempDir(), key: key, cert: cert, pool: pool, n: 1}
}

// leaf issues a certificate for names (CN = names[0]) valid until notAfter
// and writes it to name.crt / name.key; it returns the two paths.
func (ca *testCA) leaf(file string, notAfter time.Time, names ...string) (certFile, keyFile string) {
	ca.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		ca.t.Fatal(err)
	}
	ca.n++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.n), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		ca.t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		ca.t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(ca.dir, file+".crt"), filepath.Join(ca.dir, file+".key")
	writeAtomic(ca.t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	writeAtomic(ca.t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}))
	return certFile, keyFile
}

func writeAtomic(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, to, b)
}

var day = 24 * time.Hour

// tlsEnv is the default test env served over TLS: t1 and w (hosts
// *.w.test) have their own certificates, t2 uses the default one.
type tlsEnv struct {
	*testEnv
	ca    *testCA
	certs *Certs
	opts  TLSOptions
}

func startTLSEnv(t *testing.T, minVersion uint16) *tlsEnv {
	t.Helper()
	ca := newTestCA(t)
	exp := time.Now().Add(day)
	defCert, defKey := ca.leaf("default", exp, "default.test")
	t1Cert, t1Key := ca.leaf("t1", exp, "t1.test", "127.0.0.1")
	wCert, wKey := ca.leaf("w", exp, "*.w.test")
	opts := TLSOptions{CertFile: defCert, KeyFile: defKey, MinVersion: minVersion, Tenants: []TenantCert{
		{Tenant: "t1", Hosts: []string{"t1.test", "127.0.0.1"}, CertFile: t1Cert, KeyFile: t1Key},
		{Tenant: "w", Hosts: []string{"*.w.test"}, CertFile: wCert, KeyFile: wKey},
	}}
	certs, err := LoadCerts(opts)
	if err != nil {
		t.Fatal(err)
	}
	up := echoUpstream(t)
	e := startEnv(t, envConfig{upstream: up.URL, wrapLn: certs.Listener, tenantsFn: func(base, plaidURL string) []Tenant {
		ts := defaultTenants(t, base[len("http://"):], plaidURL, up.URL, nil)
		w := ts[1]
		w.Name, w.Hosts = "w", []string{"*.w.test"}
		return append(ts, w)
	}})
	e.base = "https://" + e.addr
	return &tlsEnv{testEnv: e, ca: ca, certs: certs, opts: opts}
}

// handshake connects with SNI serverName and returns the connection state.
func (e *tlsEnv) handshake(serverName string, minV, maxV uint16) (tls.ConnectionState, error) {
	c, err := tls.Dial("tcp", e.addr, &tls.Config{
		ServerName: serverName, RootCAs: e.ca.pool, MinVersion: minV, MaxVersion: maxV,
		NextProtos: []string{"h2", "http/1.1"},
	})
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.ConnectionState(), nil
}

// Issue 13.1: SNI picks the tenant's certificate (exact, wildcard), else
// the default; ALPN is http/1.1; requests are served over TLS.
func TestTLSSNISelection(t *testing.T) {
	t.Parallel()
	e := startTLSEnv(t, 0)
	tests := []struct{ sni, wantCN string }{
		{"t1.test", "t1.test"},
		{"T1.Test", "t1.test"},
		{"a.w.test", "*.w.test"},
		{"t2.test", "default.test"},
		{"unknown.test", "default.test"},
		{"", "default.test"},
	}
	for _, tt := range tests {
		st, err := e.handshake(tt.sni, 0, 0)
		if tt.sni != "" && tt.wantCN == "default.test" {
			// The default certificate does not name these hosts: the
			// client refuses it, and the certificate it saw says why.
			var ce *tls.CertificateVerificationError
			if err == nil || !asErr(err, &ce) || ce.UnverifiedCertificates[0].Subject.CommonName != tt.wantCN {
				t.Errorf("handshake(%q) = %v, want the default certificate (unverified for that name)", tt.sni, err)
			}
			continue
		}
		if tt.sni == "" {
			c, err := tls.Dial("tcp", e.addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reads which certificate is served
			if err != nil {
				t.Fatal(err)
			}
			st = c.ConnectionState()
			c.Close()
		} else if err != nil {
			t.Errorf("handshake(%q) = %v", tt.sni, err)
			continue
		}
		if cn := st.PeerCertificates[0].Subject.CommonName; cn != tt.wantCN {
			t.Errorf("handshake(%q) served %q, want %q", tt.sni, cn, tt.wantCN)
		}
		if tt.sni != "" && st.NegotiatedProtocol != "http/1.1" {
			t.Errorf("handshake(%q) ALPN = %q, want http/1.1", tt.sni, st.NegotiatedProtocol)
		}
	}
	// A request over TLS is proxied (X-Forwarded-Proto https), and a
	// wildcard host routes to its tenant.
	if res, body := get(t, tlsClient(e, "t1.test"), "https://t1.test/app", "alice-key"); res.StatusCode != 200 || !strings.Contains(body, `"user":["alice"]`) {
		t.Errorf("GET https://t1.test/app = %d %s", res.StatusCode, body)
	}
	if res, body := get(t, tlsClient(e, "a.w.test"), "https://a.w.test/app", "carol-key"); res.StatusCode != 200 || !strings.Contains(body, `"tenant":"w"`) {
		t.Errorf("wildcard host: %d %s, want tenant w", res.StatusCode, body)
	}
}

func asErr[T any](err error, target *T) bool {
	for err != nil {
		if v, ok := err.(T); ok {
			*target = v
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// tlsClient is a net/http client that dials the proxy whatever the URL's
// host, verifying against the test CA with SNI = serverName.
func tlsClient(e *tlsEnv, serverName string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: e.ca.pool, ServerName: serverName},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, e.addr)
		},
	}, Timeout: 10 * time.Second}
}

func get(t *testing.T, c *http.Client, url, key string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// Issue 13.1: TLS 1.0 and 1.1 are refused; min_version 1.3 refuses 1.2.
func TestTLSOldVersionsRefused(t *testing.T) {
	t.Parallel()
	e := startTLSEnv(t, 0)
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		if _, err := e.handshake("t1.test", v, v); err == nil {
			t.Errorf("handshake with TLS version %x succeeded, want refused", v)
		}
	}
	if st, err := e.handshake("t1.test", tls.VersionTLS12, tls.VersionTLS12); err != nil || st.Version != tls.VersionTLS12 {
		t.Errorf("TLS 1.2 handshake = %v (version %x)", err, st.Version)
	}
	e13 := startTLSEnv(t, tls.VersionTLS13)
	if _, err := e13.handshake("t1.test", tls.VersionTLS12, tls.VersionTLS12); err == nil {
		t.Errorf("min_version 1.3: a TLS 1.2 handshake succeeded")
	}
	if st, err := e13.handshake("t1.test", 0, 0); err != nil || st.Version != tls.VersionTLS13 {
		t.Errorf("min_version 1.3: handshake = %v (version %x)", err, st.Version)
	}
}

// Issue 13.1: openssl s_client (when installed) sees the same choices.
func TestTLSOpenSSLClient(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	e := startTLSEnv(t, 0)
	run := func(args ...string) (string, error) {
		cmd := exec.CommandContext(t.Context(), "openssl", append([]string{"s_client", "-connect", e.addr, "-CAfile", e.ca.dir + "/ca.pem"}, args...)...)
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	writeAtomic(t, e.ca.dir+"/ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.ca.cert.Raw}))
	out, err := run("-servername", "t1.test", "-alpn", "http/1.1", "-verify_return_error")
	if err != nil || !strings.Contains(out, "subject=CN = t1.test") || !strings.Contains(out, "ALPN protocol: http/1.1") {
		t.Errorf("openssl s_client t1.test: %v\n%s", err, out)
	}
	out, err = run("-servername", "x.w.test")
	if err != nil || !strings.Contains(out, "subject=CN = *.w.test") {
		t.Errorf("openssl s_client x.w.test: %v\n%s", err, out)
	}
	if out, err := run("-servername", "t1.test", "-tls1_1"); err == nil && strings.Contains(out, "subject=CN = t1.test") {
		t.Errorf("openssl s_client -tls1_1 got a certificate:\n%s", out)
	}
}

// Issue 13.1: a replaced certificate is served after Reload while an open
// keep-alive connection keeps working; a bad one is refused and the old
// one keeps serving; bad certificates are refused at start, naming the
// file and the reason.
func TestTLSReload(t *testing.T) {
	t.Parallel()
	e := startTLSEnv(t, 0)
	t1 := e.opts.Tenants[0]
	c := tlsClient(e, "t1.test")
	res, _ := get(t, c, "https://t1.test/app", "alice-key")
	oldSerial := res.TLS.PeerCertificates[0].SerialNumber

	newCert, newKey := e.ca.leaf("t1-new", time.Now().Add(2*day), "t1.test")
	copyFile(t, newCert, t1.CertFile)
	copyFile(t, newKey, t1.KeyFile)
	if err := e.certs.Reload(e.opts); err != nil {
		t.Fatalf("Reload = %v", err)
	}
	st, err := e.handshake("t1.test", 0, 0)
	if err != nil || st.PeerCertificates[0].SerialNumber.Cmp(oldSerial) == 0 {
		t.Fatalf("after Reload: %v, serial %v (old %v): want the new certificate", err, st.PeerCertificates, oldSerial)
	}
	newSerial := st.PeerCertificates[0].SerialNumber
	res, body := get(t, c, "https://t1.test/app", "alice-key")
	if res.StatusCode != 200 || res.TLS.PeerCertificates[0].SerialNumber.Cmp(oldSerial) != 0 {
		t.Errorf("kept-alive connection after Reload: %d %s (serial %v, want the old connection's %v)",
			res.StatusCode, body, res.TLS.PeerCertificates[0].SerialNumber, oldSerial)
	}

	// A key that does not match: refused, the current set keeps serving.
	_, otherKey := e.ca.leaf("other", time.Now().Add(day), "t1.test")
	copyFile(t, otherKey, t1.KeyFile)
	err = e.certs.Reload(e.opts)
	if err == nil || !strings.Contains(err.Error(), t1.CertFile) || !strings.Contains(err.Error(), "private key does not match") {
		t.Errorf("Reload(mismatched key) = %v, want an error naming %s and the mismatch", err, t1.CertFile)
	}
	if st, err := e.handshake("t1.test", 0, 0); err != nil || st.PeerCertificates[0].SerialNumber.Cmp(newSerial) != 0 {
		t.Errorf("after a refused Reload: %v, want the last good certificate", err)
	}

	good, goodKey := e.ca.leaf("good", time.Now().Add(day), "t1.test")
	expired, expiredKey := e.ca.leaf("expired", time.Now().Add(-time.Hour), "t1.test")
	garbage := filepath.Join(e.ca.dir, "garbage.crt")
	writeAtomic(t, garbage, []byte("not a certificate"))
	missing := filepath.Join(e.ca.dir, "missing.crt")
	tests := []struct {
		name, cert, key string
		want            []string
	}{
		{"unreadable", missing, goodKey, []string{missing, "no such file"}},
		{"garbage", garbage, goodKey, []string{garbage, "failed to find any PEM data"}},
		{"mismatch", good, expiredKey, []string{good, "private key does not match"}},
		{"expired", expired, expiredKey, []string{expired, "expired"}},
	}
	for _, tt := range tests {
		o := e.opts
		o.Tenants = []TenantCert{{Tenant: "t1", Hosts: []string{"t1.test"}, CertFile: tt.cert, KeyFile: tt.key}}
		_, err := LoadCerts(o)
		for _, w := range append(tt.want, `tenant "t1"`) {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: LoadCerts = %v, want it to contain %q", tt.name, err, w)
			}
		}
		o = TLSOptions{CertFile: tt.cert, KeyFile: tt.key}
		if _, err := LoadCerts(o); err == nil || !strings.Contains(err.Error(), "default certificate") {
			t.Errorf("%s as default: LoadCerts = %v", tt.name, err)
		}
	}
}

// Issue 13.1: the redirect listener answers 308 to https for tenant hosts.
func TestRedirectHandler(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envConfig{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: e.srv.RedirectHandler("8443"), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { hs.Close() })
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	tests := []struct{ host, path, status, loc string }{
		{"t1.test", "/app/x?q=1", "308", "https://t1.test/app/x?q=1"},
		{"t1.test:8080", "/a%2Fb", "308", "https://t1.test:8443/a%2Fb"},
		{"T2.test", "/", "308", "https://T2.test/"},
		{"evil.test", "/", "404", ""},
	}
	for _, tt := range tests {
		req, _ := http.NewRequestWithContext(t.Context(), "POST", "http://"+ln.Addr().String()+tt.path, strings.NewReader("x"))
		req.Host = tt.host
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if got := res.Status[:3]; got != tt.status || res.Header.Get("Location") != tt.loc {
			t.Errorf("POST %s%s = %s Location %q, want %s %q", tt.host, tt.path, got, res.Header.Get("Location"), tt.status, tt.loc)
		}
	}
	// With the TLS listener on 443, an explicit port maps to none.
	rec := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "http://t1.test:80/p", nil)
	e.srv.RedirectHandler("443").ServeHTTP(rec, r)
	if rec.Code != 308 || rec.Header().Get("Location") != "https://t1.test/p" {
		t.Errorf("RedirectHandler(443) = %d %q", rec.Code, rec.Header().Get("Location"))
	}
}

// Issue 13.1: reloads under load fail no request.
func TestTLSReloadUnderLoad(t *testing.T) {
	t.Parallel()
	e := startTLSEnv(t, 0)
	t1 := e.opts.Tenants[0]
	exp := time.Now().Add(day)
	aCert, aKey := e.ca.leaf("load-a", exp, "t1.test")
	bCert, bKey := e.ca.leaf("load-b", exp, "t1.test")
	stop := make(chan struct{})
	errs := make(chan error, 64)
	done := make(chan struct{})
	const workers = 4
	for w := 0; w < workers; w++ {
		go func() {
			defer func() { done <- struct{}{} }()
			c := tlsClient(e, "t1.test")
			c.Transport.(*http.Transport).DisableKeepAlives = w%2 == 0 // half new handshakes, half kept alive
			for i := 0; i < 200; i++ {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequestWithContext(t.Context(), "GET", "https://t1.test/app", nil)
				req.Header.Set("Authorization", "Bearer alice-key")
				res, err := c.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode != 200 {
						err = errors.New(res.Status)
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := 0; i < 20; i++ {
		c, k := aCert, aKey
		if i%2 == 1 {
			c, k = bCert, bKey
		}
		copyFile(t, c, t1.CertFile)
		copyFile(t, k, t1.KeyFile)
		if err := e.certs.Reload(e.opts); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	for w := 0; w < workers; w++ {
		<-done
	}
	close(errs)
	for err := range errs {
		t.Errorf("request during reloads failed: %v", err)
	}
}
