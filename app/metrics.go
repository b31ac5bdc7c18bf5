package main

import (
	"net/http"
	"strconv"
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
	return m
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
		code := statusLabel(c.Writer.Status())
		method := methodLabel(c.Request.Method)
		m.requests.WithLabelValues(code, method, route).Inc()
		m.duration.WithLabelValues(code, method, route).Observe(time.Since(start).Seconds())
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

func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return otherMethod
}
