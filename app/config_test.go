package main

import (
	"strings"
	"testing"
	"time"
)

func env(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := loadConfig(env(), "v9", "host-1")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Version: "v9", Pod: "host-1", ListenAddr: ":8080", ShutdownTimeout: 10 * time.Second}
	if cfg != want {
		t.Fatalf("defaults:\n got %+v\nwant %+v", cfg, want)
	}
}

func TestConfigValid(t *testing.T) {
	cfg, err := loadConfig(env(
		"APP_VERSION", "v2.0.1-rc1",
		"POD_NAME", "gin-demo-canary-abc12",
		"ERROR_RATE", "0.25",
		"LATENCY", "200ms+-50ms",
		"STARTUP_DELAY", "3s",
		"UNREADY_AFTER", "1m30s",
		"SHUTDOWN_DELAY", "2s",
		"SHUTDOWN_TIMEOUT", "20s",
		"PORT", "9090",
		"RAND_SEED", "42",
		"ACCESS_LOG", "true",
		"METRICS", "false",
	), "dev", "h")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Version: "v2.0.1-rc1", Pod: "gin-demo-canary-abc12", ErrorRate: 0.25,
		Latency: 200 * time.Millisecond, Jitter: 50 * time.Millisecond,
		StartupDelay: 3 * time.Second, UnreadyAfter: 90 * time.Second, ShutdownDelay: 2 * time.Second, ShutdownTimeout: 20 * time.Second,
		ListenAddr: ":9090", Seed: 42, HasSeed: true, AccessLog: true, NoMetrics: true,
	}
	if cfg != want {
		t.Fatalf("\n got %+v\nwant %+v", cfg, want)
	}
}

func TestConfigLatencyForms(t *testing.T) {
	for in, want := range map[string][2]time.Duration{
		"250ms":         {250 * time.Millisecond, 0},
		"0":             {0, 0},
		"1s":            {time.Second, 0},
		"200ms+-50ms":   {200 * time.Millisecond, 50 * time.Millisecond},
		"200ms±50ms":    {200 * time.Millisecond, 50 * time.Millisecond},
		" 100ms+-100ms": {100 * time.Millisecond, 100 * time.Millisecond},
	} {
		base, jitter, err := parseLatency(in)
		if err != nil || base != want[0] || jitter != want[1] {
			t.Errorf("parseLatency(%q) = %v, %v, %v; want %v, %v", in, base, jitter, err, want[0], want[1])
		}
	}
}

func TestConfigListenAddr(t *testing.T) {
	for _, tc := range []struct{ k, v, want string }{
		{"LISTEN_ADDR", "127.0.0.1:0", "127.0.0.1:0"},
		{"LISTEN_ADDR", ":8081", ":8081"},
		{"LISTEN_ADDR", "[::1]:8080", "[::1]:8080"},
		{"PORT", "8082", ":8082"},
	} {
		cfg, err := loadConfig(env(tc.k, tc.v), "dev", "h")
		if err != nil || cfg.ListenAddr != tc.want {
			t.Errorf("%s=%q: got %q, %v; want %q", tc.k, tc.v, cfg.ListenAddr, err, tc.want)
		}
	}
}

// Every bad value is refused, and the message names the variable.
func TestConfigInvalid(t *testing.T) {
	for _, tc := range []struct{ name, value string }{
		{"ERROR_RATE", "abc"},
		{"ERROR_RATE", "-0.1"},
		{"ERROR_RATE", "1.5"},
		{"ERROR_RATE", "NaN"},
		{"ERROR_RATE", "5%"},
		{"ERROR_RATE", ""},
		{"LATENCY", "250"},
		{"LATENCY", "-5ms"},
		{"LATENCY", "fast"},
		{"LATENCY", "100ms+-200ms"},
		{"LATENCY", "100ms+-"},
		{"LATENCY", "2m"},
		{"LATENCY", ""},
		{"STARTUP_DELAY", "5"},
		{"STARTUP_DELAY", "-1s"},
		{"STARTUP_DELAY", "2h"},
		{"UNREADY_AFTER", "30"},
		{"UNREADY_AFTER", "-3s"},
		{"UNREADY_AFTER", "soon"},
		{"UNREADY_AFTER", "25h"},
		{"UNREADY_AFTER", ""},
		{"SHUTDOWN_TIMEOUT", "0"},
		{"SHUTDOWN_TIMEOUT", "soon"},
		{"SHUTDOWN_DELAY", "x"},
		{"LISTEN_ADDR", "8080"},
		{"LISTEN_ADDR", ":http"},
		{"LISTEN_ADDR", ":70000"},
		{"PORT", "eighty"},
		{"PORT", "65536"},
		{"PORT", ""},
		{"APP_VERSION", ""},
		{"APP_VERSION", "v1 beta"},
		{"APP_VERSION", strings.Repeat("v", 200)},
		{"POD_NAME", "a\nb"},
		{"RAND_SEED", "-1"},
		{"ACCESS_LOG", "maybe"},
		{"METRICS", "off"},
	} {
		_, err := loadConfig(env(tc.name, tc.value), "dev", "h")
		if err == nil {
			t.Errorf("%s=%q accepted", tc.name, tc.value)
			continue
		}
		if !strings.Contains(err.Error(), tc.name+"=") {
			t.Errorf("%s=%q: error does not name the variable: %v", tc.name, tc.value, err)
		}
	}
}

func TestConfigUnreadyAfter(t *testing.T) {
	for in, want := range map[string]time.Duration{"0": 0, "0s": 0, "3s": 3 * time.Second, "1h30m": 90 * time.Minute} {
		cfg, err := loadConfig(env("UNREADY_AFTER", in), "dev", "h")
		if err != nil || cfg.UnreadyAfter != want {
			t.Errorf("UNREADY_AFTER=%q: got %v, %v; want %v", in, cfg.UnreadyAfter, err, want)
		}
	}
	// Unready no later than ready would never be ready: refused, naming both.
	for _, v := range []string{"2s", "1s"} {
		_, err := loadConfig(env("STARTUP_DELAY", "2s", "UNREADY_AFTER", v), "dev", "h")
		if err == nil || !strings.Contains(err.Error(), "UNREADY_AFTER=") || !strings.Contains(err.Error(), "STARTUP_DELAY") {
			t.Errorf("STARTUP_DELAY=2s UNREADY_AFTER=%s: want an error naming both, got %v", v, err)
		}
	}
	// 0 is "never", whatever STARTUP_DELAY is.
	if cfg, err := loadConfig(env("STARTUP_DELAY", "2s", "UNREADY_AFTER", "0"), "dev", "h"); err != nil || cfg.UnreadyAfter != 0 {
		t.Errorf("STARTUP_DELAY=2s UNREADY_AFTER=0: %+v, %v", cfg, err)
	}
}

func TestConfigListenAddrAndPortConflict(t *testing.T) {
	_, err := loadConfig(env("LISTEN_ADDR", ":1", "PORT", "2"), "dev", "h")
	if err == nil || !strings.Contains(err.Error(), "LISTEN_ADDR") || !strings.Contains(err.Error(), "PORT") {
		t.Fatalf("want an error naming LISTEN_ADDR and PORT, got %v", err)
	}
}

// All bad knobs are reported at once, not only the first.
func TestConfigReportsAllErrors(t *testing.T) {
	_, err := loadConfig(env("ERROR_RATE", "2", "LATENCY", "x", "STARTUP_DELAY", "y"), "dev", "h")
	for _, name := range []string{"ERROR_RATE", "LATENCY", "STARTUP_DELAY"} {
		if err == nil || !strings.Contains(err.Error(), name+"=") {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}
