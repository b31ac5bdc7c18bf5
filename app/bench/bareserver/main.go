// Command bareserver serves internal/bare's handler (plain net/http doing the
// same JSON work as gin-demo's GET /, no router, no metrics) on LISTEN_ADDR,
// as the baseline for bench/run.sh's wrk comparison. Loopback only.
package main

import (
	"context"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kanary-dev/kanary/app/internal/bare"
)

func main() {
	addr := os.Getenv("LISTEN_ADDR")
	if addr == "" {
		addr = "127.0.0.1:8081"
	}
	srv := &http.Server{Addr: addr, Handler: bare.Handler("v1.0.0", "gin-demo-bench"), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown(context.Background())
	}()
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
