// Package pgtest gives tests a PostgreSQL of their own: a fresh database on
// the server named by SAFECLOSE_TEST_PG_DSN (scripts/with-postgres.sh sets
// it), or a whole throwaway cluster that a test may stop and start. Without
// PostgreSQL a test skips, and fails when CI=true.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func need(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s and CI=true: run the tests under scripts/with-postgres.sh (make test does)", what)
	}
	t.Skip(what + " (scripts/with-postgres.sh provides PostgreSQL)")
}

// Database creates a database of its own on the test server and returns
// its DSN; it is dropped after the test.
func Database(t testing.TB) string {
	t.Helper()
	base := os.Getenv("SAFECLOSE_TEST_PG_DSN")
	if base == "" {
		need(t, "SAFECLOSE_TEST_PG_DSN is not set")
	}
	return create(t, base)
}

func create(t testing.TB, base string) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "sctest_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			return
		}
		defer c.Close(ctx)
		_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// Cluster is a throwaway PostgreSQL server of one test, which it may stop
// and start again (same data, same port).
type Cluster struct {
	DSN   string // a database of its own on the cluster
	t     testing.TB
	bin   string
	data  string
	port  int
	runas []string
}

// NewCluster initdb's and starts a cluster on a free loopback port, as an
// unprivileged user when run as root; it is removed after the test.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	bin := os.Getenv("SAFECLOSE_TEST_PG_BIN")
	if bin == "" {
		ds, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		for _, d := range ds {
			if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
				bin = d
			}
		}
	}
	if bin == "" {
		need(t, "PostgreSQL is not installed (SAFECLOSE_TEST_PG_BIN)")
	}
	c := &Cluster{t: t, bin: bin}
	dir, err := os.MkdirTemp("", "safeclose-pgtest.")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		name := os.Getenv("SAFECLOSE_TEST_PG_RUNAS")
		if name == "" {
			name = "postgres"
		}
		u, err := user.Lookup(name)
		if err != nil {
			t.Fatalf("pgtest: user %s: %v", name, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		c.runas = []string{"runuser", "-u", name, "--"}
	}
	c.data = filepath.Join(dir, "data")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.port = ln.Addr().(*net.TCPAddr).Port // PostgreSQL cannot take a listener; the window is small
	ln.Close()
	c.run(filepath.Join(bin, "initdb"), "-D", c.data, "-U", "safeclose", "--auth=trust", "-E", "UTF8")
	c.Start()
	t.Cleanup(func() { c.ctl("-m", "immediate", "stop") })
	c.DSN = create(t, fmt.Sprintf("postgres://safeclose@127.0.0.1:%d/postgres?sslmode=disable", c.port))
	return c
}

func (c *Cluster) run(name string, args ...string) {
	c.t.Helper()
	argv := append(append(append([]string{}, c.runas...), name), args...)
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("pgtest: %s: %v\n%s", filepath.Base(name), err, out)
	}
}

func (c *Cluster) ctl(args ...string) {
	argv := append(append(append([]string{}, c.runas...), filepath.Join(c.bin, "pg_ctl"), "-D", c.data), args...)
	_ = exec.Command(argv[0], argv[1:]...).Run()
}

// Start starts the (stopped) cluster and waits until it takes connections.
func (c *Cluster) Start() {
	c.t.Helper()
	c.run(filepath.Join(c.bin, "pg_ctl"), "-D", c.data, "-l", filepath.Join(filepath.Dir(c.data), "log"), "-w", "-t", "60",
		"-o", fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c max_connections=50", c.port, filepath.Dir(c.data)), "start")
}

// Stop stops the cluster at once (as a crash would look to clients).
func (c *Cluster) Stop() {
	c.t.Helper()
	c.run(filepath.Join(c.bin, "pg_ctl"), "-D", c.data, "-m", "immediate", "-w", "stop")
}
