package main

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// unmatchedRoute is the route label of requests no route matched (404s), so
// scanners and typos cannot blow up the label set with raw paths.
const unmatchedRoute = "unmatched"

// otherMethod is the method label of any method outside the standard set.
const otherMethod = "OTHER"

// durationBuckets are fine enough around 50ms..500ms to tell a p99 of 100ms
// from one of 300ms (histogram_quantile interpolates linearly inside a bucket).
var durationBuckets = []float64{.005, .01, .025, .05, .075, .1, .15, .2, .25, .3, .4, .5, .75, 1, 2.5, 5}

// unmeteredRoutes are not counted in http_requests_total nor timed in
// http_request_duration_seconds: Prometheus' own scrapes of /metrics and the
// kubelet's probes are not user traffic, and /readyz answers 503 on purpose
// while starting, which would read as a 5xx error rate during a rollout.
var unmeteredRoutes = map[string]bool{"/metrics": true, "/healthz": true, "/readyz": true}

type metrics struct {
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// routes caches the children of the two vectors per metered route
	// template, method and code, so the hot path skips WithLabelValues'
	// label hashing (~10x cheaper). Read-only after prepare.
	routes map[string]*routeSeries
}

// series are one label set's counter and histogram.
type series struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// routeSeries holds a route's series, indexed by method and status code
// (100..599), filled on first use.
type routeSeries [len(methodLabels)][500]atomic.Pointer[series]

// methodLabels are the method label values; the last one is for any method
// outside the standard set.
var methodLabels = [...]string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace, otherMethod,
}

func newMetrics(version string) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total",
			Help: "HTTP requests answered, by status code, method and route template (probes and /metrics excluded).",
		}, []string{"code", "method", "route"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by status code, method and route template (probes and /metrics excluded).",
			Buckets: durationBuckets,
		}, []string{"code", "method", "route"}),
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "app_build_info",
		Help:        "Always 1; the version label is the version this process reports.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	buildInfo.Set(1)
	m.registry.MustRegister(
		m.requests,
		m.duration,
		buildInfo,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.routes = map[string]*routeSeries{unmatchedRoute: new(routeSeries)}
	return m
}

// prepare sets up the series cache of the metered routes; call it before
// serving, once the routes are registered. It also creates the 200 and 500
// series of every metered route at zero, so that an error-rate query such as
// sum(rate(http_requests_total{code=~"5.."}[30s])) / sum(rate(http_requests_total[30s]))
// reads 0 for a healthy pod instead of returning no data.
func (m *metrics) prepare(routes gin.RoutesInfo) {
	for _, r := range routes {
		if unmeteredRoutes[r.Path] {
			continue
		}
		if m.routes[r.Path] == nil {
			m.routes[r.Path] = new(routeSeries)
		}
		mi := methodIndex(r.Method)
		for _, code := range []int{http.StatusOK, http.StatusInternalServerError} {
			m.series(r.Path, mi, code)
		}
	}
}

// series returns the counter and histogram of one label set.
func (m *metrics) series(route string, method, code int) *series {
	rs := m.routes[route]
	if rs == nil || code < 100 || code >= 600 {
		return m.newSeries(route, method, code) // not cached; not expected
	}
	p := &rs[method][code-100]
	if s := p.Load(); s != nil {
		return s
	}
	s := m.newSeries(route, method, code)
	p.Store(s) // a racing Store holds the same children
	return s
}

func (m *metrics) newSeries(route string, method, code int) *series {
	lv := []string{statusLabel(code), methodLabels[method], route}
	return &series{requests: m.requests.WithLabelValues(lv...), duration: m.duration.WithLabelValues(lv...)}
}

// middleware counts and times every request except the unmetered routes.
// The route label is Gin's route template (c.FullPath()), known before the
// handlers run, so label values stay bounded.
func (m *metrics) middleware() gin.HandlerFunc {
	return func(c *gin.Context) {
		route := c.FullPath()
		if unmeteredRoutes[route] {
			return // the rest of the chain still runs
		}
		if route == "" {
			route = unmatchedRoute
		}
		start := time.Now()
		c.Next()
		s := m.series(route, methodIndex(c.Request.Method), c.Writer.Status())
		s.duration.Observe(time.Since(start).Seconds())
		s.requests.Inc()
	}
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// statusLabels holds "100".."599" so the hot path does not allocate.
var statusLabels = func() []string {
	s := make([]string, 600)
	for i := 100; i < len(s); i++ {
		s[i] = strconv.Itoa(i)
	}
	return s
}()

func statusLabel(code int) string {
	if code >= 100 && code < len(statusLabels) {
		return statusLabels[code]
	}
	return strconv.Itoa(code)
}

// methodIndex is the index of a method's label in methodLabels.
func methodIndex(m string) int {
	for i, l := range methodLabels[:len(methodLabels)-1] {
		if m == l {
			return i
		}
	}
	return len(methodLabels) - 1
}
