// Command gin-demo is the service kanary rolls out: a Gin server with
// Prometheus metrics and fault knobs (ERROR_RATE, LATENCY, STARTUP_DELAY,
// UNREADY_AFTER) read from the environment. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// version is set at link time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

// Exit codes.
const (
	exitOK          = 0
	exitRuntime     = 1 // listen failed, server failed, or the drain timed out
	exitConfigError = 2 // a knob did not parse
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	go func() {
		<-ctx.Done()
		stop() // a second SIGTERM/SIGINT now kills at once
	}()
	os.Exit(run(ctx, os.LookupEnv, os.Stderr))
}

// run serves until ctx is done (SIGTERM), then drains and returns the exit
// code. It logs to stderr: one line at start, lines at shutdown, none per
// request unless ACCESS_LOG=true.
func run(ctx context.Context, getenv func(string) (string, bool), stderr io.Writer) int {
	start := time.Now()
	log := slog.New(slog.NewTextHandler(stderr, nil))
	host, _ := os.Hostname()
	cfg, err := loadConfig(getenv, version, host)
	if err != nil {
		fmt.Fprintf(stderr, "gin-demo: configuration error:\n%v\n", err)
		return exitConfigError
	}

	s := newServer(cfg, start)
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		log.Error("listen failed", "addr", cfg.ListenAddr, "err", err)
		return exitRuntime
	}
	srv := &http.Server{
		Handler:           s.engine,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       90 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("listening",
		"addr", ln.Addr().String(), "version", cfg.Version, "pod", cfg.Pod,
		"error_rate", cfg.ErrorRate, "latency", cfg.Latency, "jitter", cfg.Jitter,
		"startup_delay", cfg.StartupDelay, "unready_after", cfg.UnreadyAfter,
		"shutdown_delay", cfg.ShutdownDelay,
		"shutdown_timeout", cfg.ShutdownTimeout)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		log.Error("serve failed", "err", err)
		return exitRuntime
	case <-ctx.Done():
	}

	// Not ready any more; optionally keep serving while endpoints drop us.
	s.draining.Store(true)
	log.Info("shutdown: signal received", "shutdown_delay", cfg.ShutdownDelay, "shutdown_timeout", cfg.ShutdownTimeout)
	if cfg.ShutdownDelay > 0 {
		time.Sleep(cfg.ShutdownDelay)
	}
	// Stop accepting, close idle connections, wait for in-flight requests.
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Error("shutdown: drain did not finish in time; closing remaining connections",
			"shutdown_timeout", cfg.ShutdownTimeout, "err", err)
		_ = srv.Close()
		return exitRuntime
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("serve failed", "err", err)
		return exitRuntime
	}
	log.Info("shutdown: drained", "uptime", time.Since(start).Round(time.Millisecond))
	return exitOK
}
