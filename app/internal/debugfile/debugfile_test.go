package debugfile

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// EnvBinary and EnvDebug name the built pair (make build's check sets them).
const (
	EnvBinary = "GIN_DEMO_BIN"
	EnvDebug  = "GIN_DEMO_DEBUG"
)

// split links ./testdata/hello once and splits it as app/Makefile does.
func split(t *testing.T, dir, version string) (bin, debug string) {
	t.Helper()
	full := filepath.Join(dir, "hello.full")
	bin, debug = filepath.Join(dir, "hello"), filepath.Join(dir, "hello.debug")
	for _, args := range [][]string{
		{"go", "build", "-trimpath", "-ldflags", "-X main.version=" + version, "-o", full, "./testdata/hello"},
		{"objcopy", "--only-keep-debug", full, debug},
		{"objcopy", "--strip-all", full, bin},
	} {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return bin, debug
}

func TestSplitPairMatches(t *testing.T) {
	if _, err := exec.LookPath("objcopy"); err != nil {
		t.Skip("objcopy not installed")
	}
	bin, debug := split(t, t.TempDir(), "a")
	if err := Check(bin, debug); err != nil {
		t.Fatal(err)
	}
}

// The debug file of another build, the unstripped binary, or a binary as its
// own debug file are all refused.
func TestCheckRefusesAMismatch(t *testing.T) {
	if _, err := exec.LookPath("objcopy"); err != nil {
		t.Skip("objcopy not installed")
	}
	binA, debugA := split(t, t.TempDir(), "a")
	_, debugB := split(t, t.TempDir(), "bb") // another version string: another link
	for name, c := range map[string]struct{ bin, debug, want string }{
		"other build":  {binA, debugB, "not the same link"},
		"binary twice": {binA, binA, "no .debug_info"},
		"debug as bin": {debugA, debugA, "is not stripped"},
	} {
		err := Check(c.bin, c.debug)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Check = %v, want an error with %q", name, err, c.want)
		}
	}
}

// `make build` sets GIN_DEMO_BIN and GIN_DEMO_DEBUG: the artifacts themselves.
func TestBuiltPair(t *testing.T) {
	bin, debug := os.Getenv(EnvBinary), os.Getenv(EnvDebug)
	if bin == "" || debug == "" {
		t.Skip(EnvBinary + " and " + EnvDebug + " not set (make build sets them)")
	}
	if err := Check(bin, debug); err != nil {
		t.Fatal(err)
	}
}
