// Package bare is the baseline for the throughput benchmarks: a plain
// net/http handler doing the same work as gin-demo's GET / (marshal the same
// JSON body with encoding/json, set the same Content-Type, write it), with no
// router, no middleware and no metrics.
package bare

import (
	"encoding/json"
	"net/http"
)

type rootResponse struct {
	Version string `json:"version"`
	Pod     string `json:"pod"`
}

// Handler answers GET / like gin-demo with ERROR_RATE=0 and no LATENCY, and
// 404 for anything else.
func Handler(version, pod string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		body, err := json.Marshal(rootResponse{Version: version, Pod: pod})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header()["Content-Type"] = []string{"application/json; charset=utf-8"}
		_, _ = w.Write(body)
	})
}
