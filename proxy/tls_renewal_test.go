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
