package main

// Benchmarks of GET / against the baseline in internal/bare (plain net/http
// doing the same JSON work, no router, no metrics), in the same run.
// Numbers, not asserts: bench/run.sh runs them and prints the ratios.
//
//	go test -run '^$' -bench 'Root|Loopback' -benchmem .

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/kanary-dev/kanary/app/internal/bare"
)

func benchHandlers(b *testing.B) []struct {
	name string
	h    http.Handler
} {
	b.Helper()
	s := newServer(Config{Version: "v1.0.0", Pod: "gin-demo-bench"}, time.Now())
	return []struct {
		name string
		h    http.Handler
	}{
		{"gin+metrics", s.engine},
		{"bare-net-http", bare.Handler("v1.0.0", "gin-demo-bench")},
	}
}

// cpuTime is the process' user+system CPU time. Reported per op next to
// ns/op, it does not count the time the run waited for a core, which on a
// shared machine is most of the noise in ns/op.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

// discardWriter is a minimal http.ResponseWriter, so the benchmark measures
// the handlers rather than httptest.ResponseRecorder.
type discardWriter struct {
	h    http.Header
	code int
	n    int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
func (w *discardWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// BenchmarkRoot: the handler stack in-process (router, middleware, metrics,
// JSON), no network, one goroutine: the CPU cost of one request, which is
// what bounds throughput once the cores are busy. (A parallel run on this
// shared 2-core machine measures mostly how much CPU the run was given.)
func BenchmarkRoot(b *testing.B) {
	for _, tc := range benchHandlers(b) {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			req, _ := http.NewRequest(http.MethodGet, "/", nil)
			w := &discardWriter{h: http.Header{}}
			cpu := cpuTime()
			for b.Loop() {
				clear(w.h)
				w.code, w.n = 0, 0
				tc.h.ServeHTTP(w, req)
				if w.n == 0 {
					b.Fatal("empty response")
				}
			}
			reportCPU(b, cpu)
		})
	}
}

// BenchmarkLoopback: a real http.Server on 127.0.0.1 and keep-alive clients
// in the same process; ns/op is the inverse of the throughput.
func BenchmarkLoopback(b *testing.B) {
	for _, tc := range benchHandlers(b) {
		b.Run(tc.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			srv := &http.Server{Handler: tc.h, ReadHeaderTimeout: 10 * time.Second}
			go func() { _ = srv.Serve(ln) }()
			defer srv.Close()
			url := "http://" + ln.Addr().String() + "/"
			tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			b.ReportAllocs()
			b.SetParallelism(4) // 4×GOMAXPROCS concurrent connections
			b.ResetTimer()
			cpu := cpuTime()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Get(url)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Error("status " + strconv.Itoa(resp.StatusCode))
						return
					}
				}
			})
			b.StopTimer()
			reportCPU(b, cpu)
		})
	}
}
