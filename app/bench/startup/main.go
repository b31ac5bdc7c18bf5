// Command startup measures gin-demo's start time: from exec to the first 200
// from GET /readyz, over many runs, on 127.0.0.1 only. It prints min, median,
// p90 and max. STARTUP_DELAY is unset, so /readyz is ready as soon as the
// server listens.
//
//	go run ./bench/startup -bin bin/gin-demo -n 50
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"time"
)

func main() {
	bin := flag.String("bin", "bin/gin-demo", "gin-demo binary")
	n := flag.Int("n", 50, "runs")
	poll := flag.Duration("poll", 200*time.Microsecond, "interval between /readyz attempts")
	limit := flag.Duration("limit", 10*time.Second, "give up on one run after this long")
	flag.Parse()

	var times []time.Duration
	for i := range *n {
		d, err := once(*bin, *poll, *limit)
		if err != nil {
			fmt.Fprintf(os.Stderr, "run %d: %v\n", i, err)
			os.Exit(1)
		}
		times = append(times, d)
	}
	slices.Sort(times)
	q := func(p float64) time.Duration { return times[int(p*float64(len(times)-1)+0.5)] }
	fmt.Printf("start to first 200 from /readyz over %d runs: min %v  median %v  p90 %v  max %v\n",
		len(times), r(times[0]), r(q(0.5)), r(q(0.9)), r(times[len(times)-1]))
}

func r(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func once(bin string, poll, limit time.Duration) (time.Duration, error) {
	addr, err := freePort()
	if err != nil {
		return 0, err
	}
	client := &http.Client{
		Timeout:   time.Second,
		Transport: &http.Transport{DisableKeepAlives: true},
	}
	cmd := exec.Command(bin)
	cmd.Env = []string{"LISTEN_ADDR=" + addr}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	url := "http://" + addr + "/readyz"
	for time.Since(start) < limit {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start), nil
			}
		}
		time.Sleep(poll)
	}
	return 0, fmt.Errorf("not ready after %v", limit)
}
