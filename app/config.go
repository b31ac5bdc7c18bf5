package main

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Config is everything the service reads from its environment. Every knob is
// validated at start: a value that does not parse stops the process with a
// message naming the variable, never a silent default.
type Config struct {
	// Version is reported by GET / and app_build_info. APP_VERSION overrides
	// the version linked in at build time (-X main.version=...).
	Version string
	// Pod is the pod (host) name reported by GET /: POD_NAME, else the host name.
	Pod string
	// ErrorRate is the fraction of GET / requests answered with 500 (0..1).
	ErrorRate float64
	// Latency is added to every GET / request; Jitter spreads it uniformly
	// over [Latency-Jitter, Latency+Jitter].
	Latency time.Duration
	Jitter  time.Duration
	// StartupDelay is the time after start before /readyz answers 200.
	StartupDelay time.Duration
	// UnreadyAfter, when > 0, is the time after start from which /readyz
	// answers 503 for good (a release that goes bad after it was ready);
	// / and /healthz keep answering. 0 means never.
	UnreadyAfter time.Duration
	// ListenAddr is the TCP address to listen on (LISTEN_ADDR, or ":"+PORT).
	ListenAddr string
	// ShutdownDelay is how long /readyz answers 503 after SIGTERM before the
	// listener closes (lets endpoints drop the pod first). Default 0.
	ShutdownDelay time.Duration
	// ShutdownTimeout bounds the drain of in-flight requests after SIGTERM.
	ShutdownTimeout time.Duration
	// Seed, when HasSeed, makes the ERROR_RATE / LATENCY jitter draws
	// reproducible (RAND_SEED).
	Seed    uint64
	HasSeed bool
	// AccessLog turns on one log line per request (ACCESS_LOG=true). Off by default.
	AccessLog bool
	// NoMetrics removes GET /metrics (METRICS=false): a service with no metrics endpoint,
	// judged from the gateway's metrics alone. Served by default.
	NoMetrics bool
}

// Limits on knob values; anything beyond is a typo, not an intent.
const (
	maxLatency       = time.Minute
	maxStartupDelay  = time.Hour
	maxUnreadyAfter  = 24 * time.Hour
	maxShutdownTime  = 10 * time.Minute
	maxVersionLength = 128
)

// Defaults.
const (
	defaultListenAddr      = ":8080"
	defaultShutdownTimeout = 10 * time.Second
)

// knobError names the offending variable and its value.
type knobError struct {
	Name, Value, Reason string
}

func (e *knobError) Error() string {
	return fmt.Sprintf("invalid %s=%q: %s", e.Name, e.Value, e.Reason)
}

// loadConfig reads the knobs through getenv (os.LookupEnv in production).
// buildVersion is the version linked into the binary; hostname is the
// fallback pod name. All errors are returned joined, one per variable.
func loadConfig(getenv func(string) (string, bool), buildVersion, hostname string) (Config, error) {
	cfg := Config{
		Version:         buildVersion,
		Pod:             hostname,
		ListenAddr:      defaultListenAddr,
		ShutdownTimeout: defaultShutdownTimeout,
	}
	var errs []error
	bad := func(name, value, format string, args ...any) {
		errs = append(errs, &knobError{Name: name, Value: value, Reason: fmt.Sprintf(format, args...)})
	}

	if v, ok := getenv("APP_VERSION"); ok {
		if reason := checkLabel(v); reason != "" {
			bad("APP_VERSION", v, "%s", reason)
		} else {
			cfg.Version = v
		}
	}
	if v, ok := getenv("POD_NAME"); ok && v != "" {
		if reason := checkLabel(v); reason != "" {
			bad("POD_NAME", v, "%s", reason)
		} else {
			cfg.Pod = v
		}
	}

	if v, ok := getenv("ERROR_RATE"); ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		switch {
		case err != nil:
			bad("ERROR_RATE", v, "not a number (want a fraction between 0 and 1, e.g. 0.05)")
		case math.IsNaN(f) || f < 0 || f > 1:
			bad("ERROR_RATE", v, "out of range (want a fraction between 0 and 1, e.g. 0.05)")
		default:
			cfg.ErrorRate = f
		}
	}

	if v, ok := getenv("LATENCY"); ok {
		base, jitter, err := parseLatency(v)
		if err != nil {
			bad("LATENCY", v, "%v", err)
		} else {
			cfg.Latency, cfg.Jitter = base, jitter
		}
	}

	durationKnob := func(name string, limit time.Duration, positive bool, dst *time.Duration) {
		v, ok := getenv(name)
		if !ok {
			return
		}
		d, err := parseDuration(v)
		switch {
		case err != nil:
			bad(name, v, "%v", err)
		case positive && d == 0:
			bad(name, v, "must be greater than 0")
		case d > limit:
			bad(name, v, "larger than the limit %s", limit)
		default:
			*dst = d
		}
	}
	durationKnob("STARTUP_DELAY", maxStartupDelay, false, &cfg.StartupDelay)
	durationKnob("UNREADY_AFTER", maxUnreadyAfter, false, &cfg.UnreadyAfter)
	if v, ok := getenv("UNREADY_AFTER"); ok && cfg.UnreadyAfter > 0 && cfg.UnreadyAfter <= cfg.StartupDelay {
		bad("UNREADY_AFTER", v, "not after STARTUP_DELAY=%s: the service would never be ready", cfg.StartupDelay)
	}
	durationKnob("SHUTDOWN_DELAY", maxShutdownTime, false, &cfg.ShutdownDelay)
	durationKnob("SHUTDOWN_TIMEOUT", maxShutdownTime, true, &cfg.ShutdownTimeout)

	addr, addrSet := getenv("LISTEN_ADDR")
	port, portSet := getenv("PORT")
	switch {
	case addrSet && portSet:
		bad("LISTEN_ADDR", addr, "set together with PORT=%q; set only one of them", port)
	case addrSet:
		host, p, err := net.SplitHostPort(addr)
		if err != nil {
			bad("LISTEN_ADDR", addr, "want host:port, e.g. :8080 or 127.0.0.1:8080")
		} else if reason := checkPort(p); reason != "" {
			bad("LISTEN_ADDR", addr, "%s", reason)
		} else {
			cfg.ListenAddr = net.JoinHostPort(host, p)
		}
	case portSet:
		if reason := checkPort(port); reason != "" {
			bad("PORT", port, "%s", reason)
		} else {
			cfg.ListenAddr = ":" + port
		}
	}

	if v, ok := getenv("RAND_SEED"); ok {
		s, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			bad("RAND_SEED", v, "not an unsigned integer")
		} else {
			cfg.Seed, cfg.HasSeed = s, true
		}
	}

	if v, ok := getenv("ACCESS_LOG"); ok {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			bad("ACCESS_LOG", v, "not a boolean (true/false)")
		} else {
			cfg.AccessLog = b
		}
	}

	if v, ok := getenv("METRICS"); ok {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			bad("METRICS", v, "not a boolean (true/false)")
		} else {
			cfg.NoMetrics = !b
		}
	}

	return cfg, errors.Join(errs...)
}

// parseDuration is time.ParseDuration without negative values; a bare "0"
// is accepted.
func parseDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil {
		return 0, errors.New("not a duration (want e.g. 250ms, 2s, 0)")
	}
	if d < 0 {
		return 0, errors.New("negative duration")
	}
	return d, nil
}

// parseLatency parses "BASE" or "BASE+-JITTER" (the Unicode "±" is accepted
// as the same separator), e.g. "250ms" or "200ms+-50ms". The delay of each
// request is drawn uniformly from [BASE-JITTER, BASE+JITTER], so JITTER may
// not exceed BASE.
func parseLatency(v string) (base, jitter time.Duration, err error) {
	s := strings.ReplaceAll(strings.TrimSpace(v), "±", "+-")
	baseStr, jitterStr, hasJitter := strings.Cut(s, "+-")
	base, err = parseDuration(baseStr)
	if err != nil {
		return 0, 0, fmt.Errorf("base: %w (syntax: 250ms or 200ms+-50ms)", err)
	}
	if hasJitter {
		jitter, err = parseDuration(jitterStr)
		if err != nil {
			return 0, 0, fmt.Errorf("jitter: %w (syntax: 250ms or 200ms+-50ms)", err)
		}
		if jitter > base {
			return 0, 0, fmt.Errorf("jitter %s larger than base %s", jitter, base)
		}
	}
	if base+jitter > maxLatency {
		return 0, 0, fmt.Errorf("larger than the limit %s", maxLatency)
	}
	return base, jitter, nil
}

func checkPort(p string) string {
	if _, err := strconv.ParseUint(p, 10, 16); err != nil {
		return "port must be a number between 0 and 65535"
	}
	return ""
}

// checkLabel keeps values that end up in metric labels and JSON sane.
func checkLabel(v string) string {
	if v == "" {
		return "must not be empty"
	}
	if len(v) > maxVersionLength {
		return fmt.Sprintf("longer than %d bytes", maxVersionLength)
	}
	for _, r := range v {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return "must not contain spaces or control characters"
		}
	}
	return ""
}
