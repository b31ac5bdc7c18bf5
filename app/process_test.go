package main

// Tests against the real binary, built with the release flags (or
// $GIN_DEMO_BIN): static linking, exit on bad knobs, readiness after
// STARTUP_DELAY, graceful shutdown on SIGTERM. Only loopback is used.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kanary-dev/kanary/app/internal/staticbin"
	"github.com/kanary-dev/kanary/app/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

func binary(t *testing.T) string {
	t.Helper()
	p, err := testbin.Binary()
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return p
}

func TestBinaryIsStatic(t *testing.T) {
	if err := staticbin.Check(binary(t)); err != nil {
		t.Fatal(err)
	}
}

// proc is a running gin-demo.
type proc struct {
	cmd    *exec.Cmd
	addr   string // from the "listening" log line
	mu     sync.Mutex
	stderr strings.Builder
	exited chan struct{}
	err    error
}

var addrRE = regexp.MustCompile(`msg=listening addr=(\S+)`)

// start runs the binary on 127.0.0.1 with an ephemeral port and the given
// extra environment, and waits for its "listening" line.
func start(t *testing.T, extraEnv ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary(t))
	cmd.Env = append([]string{"LISTEN_ADDR=127.0.0.1:0", "PATH=/usr/bin:/bin"}, extraEnv...)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.stderr.WriteString(line + "\n")
			p.mu.Unlock()
			if m := addrRE.FindStringSubmatch(line); m != nil {
				select {
				case addrc <- m[1]:
				default:
				}
			}
		}
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
	})
	select {
	case p.addr = <-addrc:
	case <-p.exited:
		t.Fatalf("exited before listening: %v\n%s", p.err, p.log())
	case <-time.After(10 * time.Second):
		t.Fatalf("no listening line in 10s\n%s", p.log())
	}
	return p
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

func (p *proc) url(path string) string { return "http://" + p.addr + path }

// wait returns the exit code, failing if the process runs past limit.
func (p *proc) wait(t *testing.T, limit time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(limit):
		t.Fatalf("still running after %v\n%s", limit, p.log())
	}
	return p.cmd.ProcessState.ExitCode()
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestProcessBadKnobsExit(t *testing.T) {
	for _, kv := range []string{"ERROR_RATE=lots", "LATENCY=5", "STARTUP_DELAY=-1s", "UNREADY_AFTER=3", "PORT=http", "SHUTDOWN_TIMEOUT=0s"} {
		name := strings.SplitN(kv, "=", 2)[0]
		cmd := exec.Command(binary(t))
		cmd.Env = []string{kv}
		out, err := cmd.CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != exitConfigError {
			t.Errorf("%s: err %v, want exit %d\n%s", kv, err, exitConfigError, out)
			continue
		}
		if !strings.Contains(string(out), name+"=") {
			t.Errorf("%s: message does not name %s: %s", kv, name, out)
		}
	}
}

func TestProcessServesAndGetsReady(t *testing.T) {
	p := start(t, "APP_VERSION=v7.7.7", "POD_NAME=gin-demo-abc", "STARTUP_DELAY=300ms")
	c := &http.Client{Timeout: 5 * time.Second}
	code, body := get(t, c, p.url("/"))
	var root rootResponse
	if code != 200 || json.Unmarshal([]byte(body), &root) != nil || root != (rootResponse{"v7.7.7", "gin-demo-abc"}) {
		t.Fatalf("GET /: %d %s", code, body)
	}
	// Not ready yet (300ms from the start), ready within a generous bound.
	if code, _ := get(t, c, p.url("/readyz")); code != 503 {
		t.Logf("readyz %d right after start (slow machine?)", code)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if code, _ := get(t, c, p.url("/readyz")); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	code, body = get(t, c, p.url("/metrics"))
	if code != 200 || !strings.Contains(body, `app_build_info{version="v7.7.7"} 1`) ||
		!strings.Contains(body, `http_requests_total{code="200",method="GET",route="/"} 1`) {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
	// No per-request log lines by default: only the start line so far.
	if n := strings.Count(p.log(), "\n"); n != 1 {
		t.Errorf("want 1 log line, got %d:\n%s", n, p.log())
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.log())
	}
}

// SIGTERM while a slow (2s) request is in flight: the request completes with 200,
// new connections are refused, the process exits 0.
func TestProcessGracefulShutdown(t *testing.T) {
	p := start(t, "LATENCY=2s", "SHUTDOWN_TIMEOUT=10s")
	c := &http.Client{Timeout: 10 * time.Second}

	type result struct {
		code int
		body string
		err  error
	}
	inflight := make(chan result, 1)
	go func() {
		resp, err := c.Get(p.url("/"))
		if err != nil {
			inflight <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		inflight <- result{code: resp.StatusCode, body: string(b)}
	}()
	time.Sleep(300 * time.Millisecond) // the request is now sleeping in the handler
	sent := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The listener closes promptly: a new connection is refused while the
	// in-flight request is still running.
	refused := false
	for deadline := time.Now().Add(1500 * time.Millisecond); time.Now().Before(deadline); {
		conn, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err != nil {
			refused = true
			break
		}
		conn.Close()
		time.Sleep(5 * time.Millisecond)
	}
	if !refused {
		t.Error("new connections still accepted 1.5s after SIGTERM")
	}
	select {
	case r := <-inflight:
		t.Fatalf("in-flight request ended before the check: %+v", r)
	default:
	}
	r := <-inflight
	if r.err != nil || r.code != 200 {
		t.Fatalf("in-flight request: %d %q %v\n%s", r.code, r.body, r.err, p.log())
	}
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.log())
	}
	if el := time.Since(sent); el > 5*time.Second {
		t.Errorf("took %v to exit after SIGTERM", el)
	}
	if !strings.Contains(p.log(), "shutdown: drained") {
		t.Errorf("log:\n%s", p.log())
	}
}

// A request longer than SHUTDOWN_TIMEOUT does not hold the process: it exits
// non-zero (the drain did not finish) within the bound.
func TestProcessShutdownTimeoutBound(t *testing.T) {
	p := start(t, "LATENCY=30s", "SHUTDOWN_TIMEOUT=300ms")
	c := &http.Client{Timeout: 20 * time.Second}
	errc := make(chan error, 1)
	go func() {
		resp, err := c.Get(p.url("/"))
		if err == nil {
			resp.Body.Close()
			err = fmt.Errorf("got an answer %d", resp.StatusCode)
		}
		errc <- err
	}()
	time.Sleep(200 * time.Millisecond)
	sent := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	code := p.wait(t, 10*time.Second)
	if el := time.Since(sent); el > 5*time.Second {
		t.Errorf("exit %v after SIGTERM, bound is 300ms", el)
	}
	if code != exitRuntime {
		t.Errorf("exit %d, want %d\n%s", code, exitRuntime, p.log())
	}
	if err := <-errc; err == nil {
		t.Error("the cut request got an answer")
	}
}

// UNREADY_AFTER on the real binary: /readyz 200, then 503 for good, while
// GET / and /healthz keep answering.
func TestProcessUnreadyAfter(t *testing.T) {
	p := start(t, "UNREADY_AFTER=500ms")
	c := &http.Client{Timeout: 5 * time.Second}
	if code, _ := get(t, c, p.url("/readyz")); code != 200 {
		t.Logf("readyz %d right after start (slow machine?)", code)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := get(t, c, p.url("/readyz"))
		if code == 503 && strings.Contains(body, "unready") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz still %d %s after 10s", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, path := range []string{"/", "/healthz"} {
		if code, body := get(t, c, p.url(path)); code != 200 {
			t.Errorf("GET %s while unready: %d %s", path, code, body)
		}
	}
	if !strings.Contains(p.log(), "unready_after=500ms") {
		t.Errorf("start line does not show unready_after:\n%s", p.log())
	}
	c.CloseIdleConnections()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.log())
	}
}

// SHUTDOWN_DELAY: after SIGTERM, /readyz answers 503 while requests are
// still served, then the process drains and exits 0.
func TestProcessShutdownDelay(t *testing.T) {
	p := start(t, "SHUTDOWN_DELAY=1s")
	c := &http.Client{Timeout: 5 * time.Second}
	if code, _ := get(t, c, p.url("/readyz")); code != 200 {
		t.Fatalf("readyz %d before SIGTERM", code)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(200 * time.Millisecond)
	if code, body := get(t, c, p.url("/readyz")); code != 503 || !strings.Contains(body, "shutting down") {
		t.Errorf("readyz during SHUTDOWN_DELAY: %d %s", code, body)
	}
	if code, _ := get(t, c, p.url("/")); code != 200 {
		t.Errorf("GET / during SHUTDOWN_DELAY: %d", code)
	}
	c.CloseIdleConnections()
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.log())
	}
}

// run() in-process: cancelling its context is the SIGTERM path.
func TestRunInProcess(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, env("LISTEN_ADDR", "127.0.0.1:0", "APP_VERSION", "v-inproc"), pw)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	var addr string
	for addr == "" && sc.Scan() {
		if m := addrRE.FindStringSubmatch(sc.Text()); m != nil {
			addr = m[1]
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if addr == "" {
		t.Fatal("no listening line")
	}
	c := &http.Client{Timeout: 5 * time.Second}
	if code, body := get(t, c, "http://"+addr+"/"); code != 200 || !strings.Contains(body, "v-inproc") {
		t.Fatalf("GET /: %d %s", code, body)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("run returned %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return")
	}
}

func TestRunBadConfig(t *testing.T) {
	var out strings.Builder
	code := run(context.Background(), env("ERROR_RATE", "2"), &out)
	if code != exitConfigError || !strings.Contains(out.String(), "ERROR_RATE=") {
		t.Fatalf("code %d, output %q", code, out.String())
	}
}

func TestRunListenFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var out strings.Builder
	if code := run(context.Background(), env("LISTEN_ADDR", ln.Addr().String()), &out); code != exitRuntime {
		t.Fatalf("code %d, output %q", code, out.String())
	}
}
