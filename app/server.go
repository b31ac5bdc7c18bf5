package main

import (
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
)

// statusClientClosed is recorded when the client goes away while GET / waits
// out its injected latency (nginx's convention; not a 5xx).
const statusClientClosed = 499

type rootResponse struct {
	Version string `json:"version"`
	Pod     string `json:"pod"`
}

type errorResponse struct {
	Error   string `json:"error"`
	Version string `json:"version"`
	Pod     string `json:"pod"`
}

type statusResponse struct {
	Status string `json:"status"`
}

// server holds the handlers' state. Build it with newServer.
type server struct {
	cfg     Config
	metrics *metrics
	engine  *gin.Engine
	// float64 returns a uniform draw in [0, 1); it must be safe for
	// concurrent use. Tests and RAND_SEED make it deterministic.
	float64 func() float64

	readyAt   time.Time   // /readyz turns 200 at this instant
	unreadyAt time.Time   // /readyz turns 503 for good at this instant (zero: never)
	draining  atomic.Bool // set on SIGTERM: /readyz answers 503 again
	now       func() time.Time
}

// newServer wires the Gin engine. start is the instant the process started
// (STARTUP_DELAY and UNREADY_AFTER count from it).
func newServer(cfg Config, start time.Time) *server {
	s := &server{
		cfg:     cfg,
		metrics: newMetrics(cfg.Version),
		float64: rand.Float64,
		readyAt: start.Add(cfg.StartupDelay),
		now:     time.Now,
	}
	if cfg.UnreadyAfter > 0 {
		s.unreadyAt = start.Add(cfg.UnreadyAfter)
	}
	if cfg.HasSeed {
		s.float64 = lockedRand(cfg.Seed)
	}

	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	_ = e.SetTrustedProxies(nil) // never trust X-Forwarded-For for ClientIP
	e.Use(gin.Recovery())
	if cfg.AccessLog {
		e.Use(gin.Logger())
	}
	e.Use(s.metrics.middleware())

	e.GET("/", s.handleRoot)
	e.GET("/healthz", s.handleHealthz)
	e.GET("/readyz", s.handleReadyz)
	if !cfg.NoMetrics {
		metricsHandler := s.metrics.handler()
		e.GET("/metrics", func(c *gin.Context) { metricsHandler.ServeHTTP(c.Writer, c.Request) })
	}
	s.metrics.prepare(e.Routes())
	s.engine = e
	return s
}

// lockedRand is a seeded, mutex-guarded PCG source.
func lockedRand(seed uint64) func() float64 {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return func() float64 {
		mu.Lock()
		defer mu.Unlock()
		return r.Float64()
	}
}

// delay is the injected latency of one request.
func (s *server) delay() time.Duration {
	d := s.cfg.Latency
	if j := s.cfg.Jitter; j > 0 {
		d += time.Duration((s.float64()*2 - 1) * float64(j))
	}
	return d
}

// handleRoot is the business route: the one ERROR_RATE and LATENCY act on.
func (s *server) handleRoot(c *gin.Context) {
	if d := s.delay(); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-c.Request.Context().Done():
			t.Stop()
			c.Status(statusClientClosed)
			return
		}
	}
	if s.cfg.ErrorRate > 0 && s.float64() < s.cfg.ErrorRate {
		c.JSON(http.StatusInternalServerError, errorResponse{
			Error: "injected failure (ERROR_RATE)", Version: s.cfg.Version, Pod: s.cfg.Pod,
		})
		return
	}
	c.JSON(http.StatusOK, rootResponse{Version: s.cfg.Version, Pod: s.cfg.Pod})
}

func (s *server) handleHealthz(c *gin.Context) {
	c.JSON(http.StatusOK, statusResponse{Status: "ok"})
}

func (s *server) handleReadyz(c *gin.Context) {
	now := s.now()
	switch {
	case s.draining.Load():
		c.JSON(http.StatusServiceUnavailable, statusResponse{Status: "shutting down"})
	case now.Before(s.readyAt):
		c.JSON(http.StatusServiceUnavailable, statusResponse{Status: "starting"})
	case !s.unreadyAt.IsZero() && !now.Before(s.unreadyAt):
		c.JSON(http.StatusServiceUnavailable, statusResponse{Status: "unready"})
	default:
		c.JSON(http.StatusOK, statusResponse{Status: "ready"})
	}
}
