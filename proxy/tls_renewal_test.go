package proxy

import (
	"bytes"
	"crypto/tls"
	"encoding/pem"
	"log/slog"
	"maps"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A renewal that writes fullchain.pem in place is read half-written: the
// leaf is complete, the intermediate after it is cut short. The leaf
// alone matches the key, so the cut chain used to be swapped in and
// clients that need the intermediate failed until the next reload. It is
// refused, naming the file, and the complete chain is picked up once
// written.
func TestTLSReloadRefusesTruncatedChain(t *testing.T) {
	t.Parallel()
	e := startTLSEnv(t, 0)
	t1 := e.opts.Tenants[0]
	leafCert, leafKey := e.ca.leaf("chain", time.Now().Add(2*day), "t1.test")
	leaf, err := os.ReadFile(leafCert)
	if err != nil {
		t.Fatal(err)
	}
	full := append(append([]byte{}, leaf...), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.ca.cert.Raw})...)

	copyFile(t, leafKey, t1.KeyFile)
	writeAtomic(t, t1.CertFile, full[:len(leaf)+100])
	err = e.certs.Reload(e.opts)
	if err == nil || !strings.Contains(err.Error(), t1.CertFile) || !strings.Contains(err.Error(), "incomplete") {
		t.Fatalf("Reload(cut chain) = %v, want an error naming %s and the incomplete block", err, t1.CertFile)
	}
	if _, err := LoadCerts(e.opts); err == nil {
		t.Errorf("LoadCerts(cut chain) = nil error, want refused")
	}

	writeAtomic(t, t1.CertFile, full)
	if err := e.certs.Reload(e.opts); err != nil {
		t.Fatalf("Reload(complete chain) = %v", err)
	}
	st, err := e.handshake("t1.test", 0, 0)
	if err != nil || len(st.PeerCertificates) != 2 {
		t.Fatalf("after the complete chain: %v, %d certificates served, want 2", err, len(st.PeerCertificates))
	}
}

// A renewal that writes another domain's certificate (and its key) into a
// tenant's files used to be swapped in with a warning: every client of
// the tenant then refused the handshake, though the certificate served
// until then was still good. Reload refuses it, naming the file and the
// host, and the current certificate keeps serving. A host the current
// certificate does not cover either is no reason to refuse.
func TestTLSReloadRefusesCertificateForOtherNames(t *testing.T) {
	t.Parallel()
	e := startTLSEnv(t, 0)
	t1, w := e.opts.Tenants[0], e.opts.Tenants[1]
	before, err := e.handshake("t1.test", 0, 0)
	if err != nil {
		t.Fatal(err)
	}

	otherCert, otherKey := e.ca.leaf("other", time.Now().Add(2*day), "other.test")
	copyFile(t, otherCert, t1.CertFile)
	copyFile(t, otherKey, t1.KeyFile)
	err = e.certs.Reload(e.opts)
	if err == nil || !strings.Contains(err.Error(), t1.CertFile) || !strings.Contains(err.Error(), "t1.test") {
		t.Fatalf("Reload(certificate for other.test) = %v, want an error naming %s and t1.test", err, t1.CertFile)
	}
	if st, err := e.handshake("t1.test", 0, 0); err != nil || st.PeerCertificates[0].SerialNumber.Cmp(before.PeerCertificates[0].SerialNumber) != 0 {
		t.Errorf("after the refused Reload: %v, want the certificate served before", err)
	}

	good, goodKey := e.ca.leaf("t1-good", time.Now().Add(2*day), "t1.test")
	copyFile(t, good, t1.CertFile)
	copyFile(t, goodKey, t1.KeyFile)

	// A wildcard tenant: a certificate for one name only loses the others.
	oneCert, oneKey := e.ca.leaf("one", time.Now().Add(2*day), "a.w.test")
	copyFile(t, oneCert, w.CertFile)
	copyFile(t, oneKey, w.KeyFile)
	if err := e.certs.Reload(e.opts); err == nil || !strings.Contains(err.Error(), w.CertFile) || !strings.Contains(err.Error(), "*.w.test") {
		t.Errorf("Reload(a.w.test for *.w.test) = %v, want refused", err)
	}

	// A new host that no certificate covered yet is only warned about.
	goodW, goodWKey := e.ca.leaf("w-good", time.Now().Add(2*day), "*.w.test")
	copyFile(t, goodW, w.CertFile)
	copyFile(t, goodWKey, w.KeyFile)
	o := e.opts
	o.Tenants = append([]TenantCert{}, o.Tenants...)
	o.Tenants[0].Hosts = append([]string{"new.test"}, o.Tenants[0].Hosts...)
	if err := e.certs.Reload(o); err != nil {
		t.Fatalf("Reload(adds new.test, not covered before either) = %v, want nil", err)
	}
	if st, err := e.handshake("t1.test", 0, 0); err != nil || st.PeerCertificates[0].SerialNumber.Cmp(before.PeerCertificates[0].SerialNumber) == 0 {
		t.Errorf("after the good Reload: %v, want the renewed certificate", err)
	}
}

// expiryLog is a log destination safe for the handshakes' goroutines.
type expiryLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *expiryLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *expiryLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A certificate whose renewal failed used to go unnoticed until clients
// refused it: nothing was logged before it expired. A certificate close
// to its end (within 14 days, or a third of its lifetime if shorter) is
// logged as a warning naming the file, at load and then at most hourly
// while handshakes arrive; an expired one is logged as an error.
func TestTLSLogsCertificateNearExpiry(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	notAfter := time.Now().Add(30 * day)
	defCert, defKey := ca.leaf("default", time.Now().Add(90*day), "default.test")
	t1Cert, t1Key := ca.leaf("t1", notAfter, "t1.test")
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	var logs expiryLog
	certs, err := LoadCerts(TLSOptions{
		CertFile: defCert, KeyFile: defKey,
		Tenants: []TenantCert{{Tenant: "t1", Hosts: []string{"t1.test"}, CertFile: t1Cert, KeyFile: t1Key}},
		Logger:  slog.New(slog.NewJSONHandler(&logs, nil)),
		Now:     func() time.Time { return time.Unix(0, clock.Load()) },
	})
	if err != nil {
		t.Fatal(err)
	}
	hello := func() {
		t.Helper()
		if _, err := certs.Config().GetConfigForClient(&tls.ClientHelloInfo{ServerName: "t1.test"}); err != nil {
			t.Fatal(err)
		}
	}
	hello()
	if l := logs.String(); strings.Contains(l, "expire") {
		t.Fatalf("30 days before expiry: logged %s", l)
	}

	clock.Store(notAfter.Add(-10 * day).UnixNano())
	hello()
	hello() // at most once an hour
	if l := logs.String(); strings.Count(l, "expires soon") != 1 || !strings.Contains(l, t1Cert) || !strings.Contains(l, `"tenant":"t1"`) || strings.Contains(l, defCert) {
		t.Fatalf("10 days before expiry: logged %s, want one warning naming %s", l, t1Cert)
	}

	clock.Store(notAfter.Add(time.Hour).UnixNano())
	hello()
	if l := logs.String(); !strings.Contains(l, `"level":"ERROR"`) || !strings.Contains(l, "has expired") || !strings.Contains(l, t1Cert) {
		t.Fatalf("after expiry: logged %s, want an error naming %s", l, t1Cert)
	}

	// Loading a set that is already close to its end warns at once.
	logs.mu.Lock()
	logs.b.Reset()
	logs.mu.Unlock()
	threeDaysLeft := func() time.Time { return notAfter.Add(-3 * day) }
	if _, err := LoadCerts(TLSOptions{CertFile: t1Cert, KeyFile: t1Key, Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Now: threeDaysLeft}); err != nil {
		t.Fatal(err)
	}
	if l := logs.String(); !strings.Contains(l, "expires soon") || !strings.Contains(l, t1Cert) {
		t.Errorf("LoadCerts(3 days left): logged %s, want a warning naming %s", l, t1Cert)
	}
}

// Every loaded certificate's end is a gauge an operator can alert on
// (safeclose_tls_certificate_not_after_seconds{tenant,cert_file}), and it
// follows a reload.
func TestTLSCertificateExpiryMetric(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	defEnd, t1End := time.Now().Add(20*day).Truncate(time.Second), time.Now().Add(3*day).Truncate(time.Second)
	defCert, defKey := ca.leaf("default", defEnd, "default.test")
	t1Cert, t1Key := ca.leaf("t1", t1End, "t1.test")
	opts := TLSOptions{CertFile: defCert, KeyFile: defKey, Tenants: []TenantCert{
		{Tenant: "t1", Hosts: []string{"t1.test"}, CertFile: t1Cert, KeyFile: t1Key},
	}}
	certs, err := LoadCerts(opts)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(certs)
	ends := func() map[string]float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, mf := range mfs {
			if mf.GetName() != "safeclose_tls_certificate_not_after_seconds" {
				continue
			}
			for _, m := range mf.GetMetric() {
				l := map[string]string{}
				for _, p := range m.GetLabel() {
					l[p.GetName()] = p.GetValue()
				}
				out[l["tenant"]+" "+l["cert_file"]] = m.GetGauge().GetValue()
			}
		}
		return out
	}
	want := map[string]float64{
		"(default) " + defCert: float64(defEnd.Unix()),
		"t1 " + t1Cert:         float64(t1End.Unix()),
	}
	if got := ends(); !maps.Equal(got, want) {
		t.Fatalf("expiry gauge = %v, want %v", got, want)
	}
	renewed := time.Now().Add(60 * day).Truncate(time.Second)
	newCert, newKey := ca.leaf("t1-renewed", renewed, "t1.test")
	copyFile(t, newCert, t1Cert)
	copyFile(t, newKey, t1Key)
	if err := certs.Reload(opts); err != nil {
		t.Fatal(err)
	}
	want["t1 "+t1Cert] = float64(renewed.Unix())
	if got := ends(); !maps.Equal(got, want) {
		t.Fatalf("expiry gauge after the renewal = %v, want %v", got, want)
	}
}
