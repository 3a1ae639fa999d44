package proxy

import (
	"encoding/pem"
	"os"
	"strings"
	"testing"
	"time"
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
