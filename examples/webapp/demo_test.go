package main

import (
	"slices"
	"testing"

	"github.com/safeclose/safeclose/configs"
)

// TestDemoConfig checks configs/demo.yaml (what `make demo` runs) against
// this app: it validates, its upstream is the app's default address, and its
// auth plugin opens exactly the routes a signed-out browser needs.
func TestDemoConfig(t *testing.T) {
	f, err := configs.Load("../../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	if len(f.Tenants) != 1 {
		t.Fatalf("tenants = %d, want 1", len(f.Tenants))
	}
	tn := f.Tenants[0]
	if len(tn.Upstream) != 1 || tn.Upstream[0] != "http://127.0.0.1:8081" {
		t.Errorf("upstream = %v, want the web app's default -listen", tn.Upstream)
	}
	p := tn.Auth.Plugin
	if p == nil || p.Path != "bin/webapp-auth.wasm" {
		t.Fatalf("auth plugin = %+v, want bin/webapp-auth.wasm", p)
	}
	var public []string
	for _, v := range p.Config["public"].([]any) {
		public = append(public, v.(string))
	}
	want := []string{"GET /", "GET /app.js", "GET /app.js.map", "POST /signin", "POST /signout"}
	if !slices.Equal(public, want) {
		t.Errorf("public routes = %q, want %q", public, want)
	}
}
