package proxy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Issue 9.12: a full disk killed the process. The webhook route answers 503
// store_unavailable (Plaid retries) while the disk is full, and 200 again
// once space is freed, without a restart.
func TestWebhookDiskFullAnswers503ThenRecovers(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the full-disk test needs root to mount a tmpfs, and CI=true")
		}
		t.Skip("the full-disk test needs root to mount a small tmpfs (mount -t tmpfs -o size=8m)")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { // runs after the env's Cleanup closed the store
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	e := startEnv(t, envConfig{dir: filepath.Join(mnt, "data"), memTable: 256 << 10, webhookOpt: WebhookOptions{Workers: -1}})
	ws := signWebhooks(t, e.sim, 3)
	post := func(w signedWebhook) resp {
		return e.do("POST", "t1.test", pathWebhook, "", w.body, "Plaid-Verification", w.jwt)
	}
	if r := post(ws[0]); r.status != 200 {
		t.Fatalf("webhook with space = %d %s", r.status, r.body)
	}
	// Take all but 1 MiB: below the store's reserve (10 memtables = 2.5 MiB).
	var st syscall.Statfs_t
	if err := syscall.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, int64(st.Bavail)*st.Bsize-(1<<20)), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := post(ws[1]); r.status != 503 || !strings.Contains(string(r.body), `"store_unavailable"`) {
		t.Errorf("webhook on a full disk = %d %s; want 503 store_unavailable", r.status, r.body)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if r := post(ws[2]); r.status != 200 {
		t.Errorf("webhook after space returned = %d %s; want 200", r.status, r.body)
	}
}
