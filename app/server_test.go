package main

import (
	"context"
	"encoding/json"
	"math"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

func testServer(t *testing.T, cfg Config) *server {
	t.Helper()
	if cfg.Version == "" {
		cfg.Version = "v1-test"
	}
	if cfg.Pod == "" {
		cfg.Pod = "pod-1"
	}
	return newServer(cfg, time.Now())
}

func do(s *server, method, path string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	s.engine.ServeHTTP(w, httptest.NewRequest(method, path, nil))
	return w
}

func decode[T any](t *testing.T, w *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatalf("body %q: %v", w.Body.String(), err)
	}
	return v
}

func TestRoot(t *testing.T) {
	s := testServer(t, Config{Version: "v1.2.3", Pod: "gin-demo-7d9f-x2"})
	w := do(s, "GET", "/")
	if w.Code != 200 {
		t.Fatalf("status %d", w.Code)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	got := decode[rootResponse](t, w)
	if got != (rootResponse{Version: "v1.2.3", Pod: "gin-demo-7d9f-x2"}) {
		t.Errorf("body %+v", got)
	}
}

func TestHealthz(t *testing.T) {
	// Liveness holds even with every business request failing and while starting.
	s := testServer(t, Config{ErrorRate: 1, StartupDelay: time.Hour})
	w := do(s, "GET", "/healthz")
	if w.Code != 200 || decode[statusResponse](t, w).Status != "ok" {
		t.Fatalf("healthz: %d %s", w.Code, w.Body)
	}
}

func TestReadyzStartupDelay(t *testing.T) {
	start := time.Now()
	s := newServer(Config{Version: "v", Pod: "p", StartupDelay: 2 * time.Second}, start)
	now := start
	s.now = func() time.Time { return now }

	for _, tc := range []struct {
		at     time.Duration
		code   int
		status string
	}{
		{0, 503, "starting"},
		{1999 * time.Millisecond, 503, "starting"},
		{2 * time.Second, 200, "ready"},
		{time.Hour, 200, "ready"},
	} {
		now = start.Add(tc.at)
		w := do(s, "GET", "/readyz")
		if w.Code != tc.code || decode[statusResponse](t, w).Status != tc.status {
			t.Errorf("at +%v: %d %s, want %d %s", tc.at, w.Code, w.Body, tc.code, tc.status)
		}
	}
	// While starting, GET / still answers: readiness only gates traffic.
	now = start
	if w := do(s, "GET", "/"); w.Code != 200 {
		t.Errorf("GET / while starting: %d", w.Code)
	}
	// SIGTERM turns it unready again.
	now = start.Add(time.Hour)
	s.draining.Store(true)
	if w := do(s, "GET", "/readyz"); w.Code != 503 || decode[statusResponse](t, w).Status != "shutting down" {
		t.Errorf("draining: %d %s", w.Code, w.Body)
	}
}

// UNREADY_AFTER: ready after STARTUP_DELAY, then 503 for good from
// UNREADY_AFTER on, while / and /healthz keep answering 200.
func TestReadyzUnreadyAfter(t *testing.T) {
	start := time.Now()
	s := newServer(Config{Version: "v", Pod: "p", StartupDelay: time.Second, UnreadyAfter: 3 * time.Second}, start)
	now := start
	s.now = func() time.Time { return now }

	for _, tc := range []struct {
		at     time.Duration
		code   int
		status string
	}{
		{0, 503, "starting"},
		{time.Second, 200, "ready"},
		{2999 * time.Millisecond, 200, "ready"},
		{3 * time.Second, 503, "unready"},
		{time.Hour, 503, "unready"},
	} {
		now = start.Add(tc.at)
		w := do(s, "GET", "/readyz")
		if w.Code != tc.code || decode[statusResponse](t, w).Status != tc.status {
			t.Errorf("at +%v: %d %s, want %d %s", tc.at, w.Code, w.Body, tc.code, tc.status)
		}
	}
	// Unready only gates traffic: the service still serves and is alive.
	if w := do(s, "GET", "/"); w.Code != 200 {
		t.Errorf("GET / while unready: %d", w.Code)
	}
	if w := do(s, "GET", "/healthz"); w.Code != 200 {
		t.Errorf("GET /healthz while unready: %d", w.Code)
	}
	// SIGTERM still reads as shutting down.
	s.draining.Store(true)
	if w := do(s, "GET", "/readyz"); w.Code != 503 || decode[statusResponse](t, w).Status != "shutting down" {
		t.Errorf("draining: %d %s", w.Code, w.Body)
	}
	// 0 (the default) means never.
	s0 := newServer(Config{Version: "v", Pod: "p"}, start)
	s0.now = func() time.Time { return start.Add(24 * time.Hour) }
	if w := do(s0, "GET", "/readyz"); w.Code != 200 {
		t.Errorf("UNREADY_AFTER unset, a day later: %d %s", w.Code, w.Body)
	}
}

// A real clock: with STARTUP_DELAY=150ms, /readyz flips between 150ms and a
// generous bound.
func TestReadyzStartupDelayRealClock(t *testing.T) {
	start := time.Now()
	s := newServer(Config{Version: "v", Pod: "p", StartupDelay: 150 * time.Millisecond}, start)
	if w := do(s, "GET", "/readyz"); w.Code != 503 {
		t.Fatalf("immediately: %d", w.Code)
	}
	deadline := start.Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if w := do(s, "GET", "/readyz"); w.Code == 200 {
			if el := time.Since(start); el < 150*time.Millisecond {
				t.Fatalf("ready after %v, before STARTUP_DELAY", el)
			}
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("never ready")
}

func TestNotFound(t *testing.T) {
	s := testServer(t, Config{})
	if w := do(s, "GET", "/no/such/path"); w.Code != 404 {
		t.Fatalf("status %d", w.Code)
	}
	if w := do(s, "POST", "/"); w.Code != 404 {
		t.Fatalf("POST /: %d", w.Code)
	}
}

// ERROR_RATE=p answers about p of GET / with 500. With a fixed seed the count
// is deterministic, but the bound is the statistical one: within 5 standard
// deviations of the binomial mean (a false failure chance of ~6e-7 for any seed).
func TestErrorRateBinomial(t *testing.T) {
	const n = 10000
	for _, p := range []float64{0, 0.01, 0.1, 0.5, 0.9, 1} {
		s := testServer(t, Config{ErrorRate: p, Seed: 20240601, HasSeed: true})
		fails := 0
		for range n {
			switch w := do(s, "GET", "/"); w.Code {
			case 500:
				fails++
				if e := decode[errorResponse](t, w); e.Version != "v1-test" || e.Error == "" {
					t.Fatalf("500 body %+v", e)
				}
			case 200:
			default:
				t.Fatalf("status %d", w.Code)
			}
		}
		mean := n * p
		sd := math.Sqrt(n * p * (1 - p))
		if math.Abs(float64(fails)-mean) > 5*sd {
			t.Errorf("ERROR_RATE=%v: %d of %d failed; want %.0f ± %.0f", p, fails, n, mean, 5*sd)
		}
		// The counter agrees with what the clients saw.
		if got := testutil.ToFloat64(s.metrics.requests.WithLabelValues("500", "GET", "/")); int(got) != fails {
			t.Errorf("ERROR_RATE=%v: http_requests_total{code=500} = %v, clients saw %d", p, got, fails)
		}
		if got := testutil.ToFloat64(s.metrics.requests.WithLabelValues("200", "GET", "/")); int(got) != n-fails {
			t.Errorf("ERROR_RATE=%v: http_requests_total{code=200} = %v, clients saw %d", p, got, n-fails)
		}
	}
}

// The same seed gives the same sequence of answers.
func TestErrorRateSeedReproducible(t *testing.T) {
	seq := func() string {
		s := testServer(t, Config{ErrorRate: 0.5, Seed: 7, HasSeed: true})
		var b strings.Builder
		for range 64 {
			if do(s, "GET", "/").Code == 500 {
				b.WriteByte('x')
			} else {
				b.WriteByte('.')
			}
		}
		return b.String()
	}
	if a, b := seq(), seq(); a != b {
		t.Fatalf("same seed, different sequences:\n%s\n%s", a, b)
	}
}

// ERROR_RATE and LATENCY act on GET / only, never on probes or metrics.
func TestKnobsSpareProbesAndMetrics(t *testing.T) {
	s := testServer(t, Config{ErrorRate: 1, Latency: time.Minute})
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		start := time.Now()
		if w := do(s, "GET", p); w.Code != 200 {
			t.Errorf("%s: %d", p, w.Code)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("%s took %v", p, el)
		}
	}
}

func TestLatency(t *testing.T) {
	s := testServer(t, Config{Latency: 120 * time.Millisecond})
	start := time.Now()
	w := do(s, "GET", "/")
	el := time.Since(start)
	if w.Code != 200 {
		t.Fatalf("status %d", w.Code)
	}
	if el < 120*time.Millisecond || el > 2*time.Second {
		t.Fatalf("took %v, want 120ms (+ scheduling slack)", el)
	}
}

// Jitter draws stay within [base-j, base+j] and spread over the range.
func TestLatencyJitterDraws(t *testing.T) {
	s := testServer(t, Config{Latency: 200 * time.Millisecond, Jitter: 50 * time.Millisecond, Seed: 1, HasSeed: true})
	lo, hi := time.Hour, time.Duration(0)
	var sum time.Duration
	const n = 5000
	for range n {
		d := s.delay()
		if d < 150*time.Millisecond || d > 250*time.Millisecond {
			t.Fatalf("draw %v outside 200ms±50ms", d)
		}
		lo, hi, sum = min(lo, d), max(hi, d), sum+d
	}
	if lo > 152*time.Millisecond || hi < 248*time.Millisecond {
		t.Errorf("draws span only [%v, %v]", lo, hi)
	}
	if mean := sum / n; mean < 197*time.Millisecond || mean > 203*time.Millisecond {
		t.Errorf("mean draw %v, want ~200ms", mean)
	}
}

// A client that goes away while GET / waits out its latency is recorded as
// 499, not as a success or a 5xx, and the handler returns at once.
func TestLatencyClientGone(t *testing.T) {
	s := testServer(t, Config{Latency: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequest("GET", "/", nil).WithContext(ctx)
	w := httptest.NewRecorder()
	done := make(chan struct{})
	go func() { s.engine.ServeHTTP(w, req); close(done) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("handler did not return after the client left")
	}
	if got := testutil.ToFloat64(s.metrics.requests.WithLabelValues("499", "GET", "/")); got != 1 {
		t.Errorf("http_requests_total{code=499} = %v", got)
	}
}

// With the buckets chosen, a p99 of ~100ms and one of ~300ms land in
// different buckets, so histogram_quantile tells them apart.
func TestHistogramSeparates100msFrom300ms(t *testing.T) {
	p99 := func(lat time.Duration) float64 {
		s := testServer(t, Config{Latency: lat})
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() { do(s, "GET", "/") })
		}
		wg.Wait()
		return histogramQuantile(t, 0.99, s, "http_request_duration_seconds")
	}
	a, b := p99(100*time.Millisecond), p99(300*time.Millisecond)
	if a < 0.1 || a > 0.2 || b < 0.3 || b > 0.5 {
		t.Fatalf("p99 estimates %.3fs (100ms) and %.3fs (300ms)", a, b)
	}
}

// histogramQuantile is Prometheus' histogram_quantile over all series of a
// histogram, summed by le (linear interpolation inside the bucket).
func histogramQuantile(t *testing.T, q float64, s *server, name string) float64 {
	t.Helper()
	mfs, err := s.metrics.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[float64]uint64{}
	var total uint64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			h := m.GetHistogram()
			total += h.GetSampleCount()
			for _, b := range h.GetBucket() {
				counts[b.GetUpperBound()] += b.GetCumulativeCount()
			}
		}
	}
	if total == 0 {
		t.Fatalf("no observations in %s", name)
	}
	rank := q * float64(total)
	prev, prevCount := 0.0, uint64(0)
	for _, ub := range durationBuckets {
		c := counts[ub]
		if float64(c) >= rank {
			return prev + (ub-prev)*(rank-float64(prevCount))/float64(c-prevCount)
		}
		prev, prevCount = ub, c
	}
	return math.Inf(1)
}

func TestMetricsOffRemovesTheEndpoint(t *testing.T) {
	s := testServer(t, Config{Version: "v1", NoMetrics: true})
	if w := do(s, "GET", "/metrics"); w.Code != 404 {
		t.Fatalf("METRICS=false: /metrics answered %d, want 404", w.Code)
	}
	if w := do(s, "GET", "/"); w.Code != 200 {
		t.Fatalf("METRICS=false: / answered %d", w.Code)
	}
}

func TestMetricsContent(t *testing.T) {
	s := testServer(t, Config{Version: "v3.1.4", ErrorRate: 0.5, Seed: 3, HasSeed: true})
	for range 20 {
		do(s, "GET", "/")
	}
	do(s, "GET", "/healthz")
	do(s, "GET", "/readyz")
	do(s, "GET", "/nope")
	do(s, "GET", "/also/nope/123")
	do(s, "DELETE", "/x")
	do(s, "BREW", "/")
	do(s, "GET", "/metrics")

	w := do(s, "GET", "/metrics")
	if w.Code != 200 {
		t.Fatalf("/metrics: %d", w.Code)
	}
	body := w.Body.String()
	for _, want := range []string{
		`# TYPE http_requests_total counter`,
		`# TYPE http_request_duration_seconds histogram`,
		`app_build_info{version="v3.1.4"} 1`,
		`http_requests_total{code="404",method="GET",route="unmatched"} 2`,
		`http_requests_total{code="404",method="DELETE",route="unmatched"} 1`,
		`http_requests_total{code="404",method="OTHER",route="unmatched"} 1`,
		`http_request_duration_seconds_bucket{code="200",method="GET",route="/",le="0.005"}`,
		`http_request_duration_seconds_bucket{code="500",method="GET",route="/",le="+Inf"}`,
		`go_goroutines`,
		`process_start_time_seconds`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Every bucket boundary is exposed.
	for _, le := range []string{"0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.15", "0.2", "0.25", "0.3", "0.4", "0.5", "0.75", "1", "2.5", "5", "+Inf"} {
		if !strings.Contains(body, `route="/",le="`+le+`"}`) {
			t.Errorf("bucket le=%s missing", le)
		}
	}
	// Probes and scrapes are not user traffic; raw paths never become labels.
	for _, unwanted := range []string{`route="/metrics"`, `route="/healthz"`, `route="/readyz"`, `/nope`, `/also`, `BREW`} {
		if strings.Contains(body, unwanted) {
			t.Errorf("/metrics contains %q", unwanted)
		}
	}
	// 200 + 500 on / add up to the 20 requests sent.
	ok := testutil.ToFloat64(s.metrics.requests.WithLabelValues("200", "GET", "/"))
	bad := testutil.ToFloat64(s.metrics.requests.WithLabelValues("500", "GET", "/"))
	if ok+bad != 20 || bad == 0 || ok == 0 {
		t.Errorf("GET / counted %v ok + %v failed, want 20 with both > 0", ok, bad)
	}
	// The histogram counted the same requests.
	var hist dto.Metric
	if err := s.metrics.duration.WithLabelValues("200", "GET", "/").(interface{ Write(*dto.Metric) error }).Write(&hist); err != nil {
		t.Fatal(err)
	}
	if float64(hist.GetHistogram().GetSampleCount()) != ok {
		t.Errorf("histogram count %d, counter %v", hist.GetHistogram().GetSampleCount(), ok)
	}
}

// Before any request, the 200 and 500 series of GET / exist at 0, so an
// error-rate query reads 0 rather than no data.
func TestMetricsSeriesExistAtStart(t *testing.T) {
	s := testServer(t, Config{})
	body := do(s, "GET", "/metrics").Body.String()
	for _, want := range []string{
		`http_requests_total{code="200",method="GET",route="/"} 0`,
		`http_requests_total{code="500",method="GET",route="/"} 0`,
		`http_request_duration_seconds_count{code="200",method="GET",route="/"} 0`,
		`http_request_duration_seconds_count{code="500",method="GET",route="/"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestMetricsLint(t *testing.T) {
	s := testServer(t, Config{})
	do(s, "GET", "/")
	problems, err := testutil.GatherAndLint(s.metrics.registry)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric lint: %s: %s", p.Metric, p.Text)
	}
}
