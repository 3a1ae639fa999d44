package hostabi_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/safeclose/safeclose/hostabi"
)

// Load a tenant's auth plugin and ask it about one request. The guest is
// testdata/guests/allow, built by TestMain with
// GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared.
func ExampleEngine_Load() {
	ctx := context.Background()
	e, err := hostabi.NewEngine(ctx, hostabi.Options{})
	if err != nil {
		panic(err)
	}
	defer e.Close(ctx)
	wasm, err := os.ReadFile(guestPaths["allow"])
	if err != nil {
		panic(err)
	}
	p, err := e.Load(ctx, hostabi.PluginOptions{
		Tenant: "acme", Name: "allow", Kind: hostabi.KindAuth, Wasm: wasm,
		Timeout: time.Second, PoolSize: 1,
	})
	if err != nil {
		panic(err)
	}
	defer p.Close(ctx)
	d, err := p.Authenticate(ctx, &req{headers: hdr("X-User", "alice", "X-Role", "admin")})
	fmt.Println(d.Allow, d.Subject, d.Claims, err)
	d, err = p.Authenticate(ctx, &req{})
	fmt.Println(d.Allow, d.Status, err)
	// Output:
	// true alice [{role admin}] <nil>
	// false 401 <nil>
}
