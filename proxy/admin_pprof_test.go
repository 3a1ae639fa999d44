package proxy

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// Issue 12.1: the CPU and allocation profiles are served on the admin
// listener only when Options.AdminPprof is set, never by default.
func TestAdminPprof(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		on   bool
		want int
	}{{"default off", false, http.StatusNotFound}, {"on", true, http.StatusOK}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := startEnv(t, envConfig{optsFn: func(o *Options) { o.AdminPprof = tt.on }})
			// One request first: the env's Shutdown must not race its Serve.
			if res, err := http.Get("http://" + e.addr + "/"); err != nil {
				t.Fatal(err)
			} else {
				res.Body.Close()
			}
			for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1"} {
				rec := httptest.NewRecorder()
				e.srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
				if rec.Code != tt.want {
					t.Errorf("GET %s with AdminPprof=%v = %d, want %d", path, tt.on, rec.Code, tt.want)
				}
			}
		})
	}
}
