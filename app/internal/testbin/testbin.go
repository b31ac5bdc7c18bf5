// Package testbin builds the gin-demo binary for tests, once per test
// process, with the release flags. Only tests import it.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
)

// EnvBinary names a prebuilt binary to test instead of building one
// (make test sets it to bin/gin-demo, so the artifact itself is tested).
const EnvBinary = "GIN_DEMO_BIN"

// BuildFlags are the release build flags (kept in step with the Makefile),
// stripped at link time: the Makefile strips the same sections with objcopy
// after one link, to keep them in a debug file.
func BuildFlags(version string) []string {
	return []string{"-trimpath", "-tags", "nomsgpack", "-ldflags", "-s -w -X main.version=" + version}
}

var (
	once    sync.Once
	binPath string
	tmpDir  string
	errB    error
)

// Binary returns the path of a gin-demo binary: $GIN_DEMO_BIN if set, else
// one built into a temporary directory (call Cleanup from TestMain).
func Binary() (string, error) {
	once.Do(func() {
		if p := os.Getenv(EnvBinary); p != "" {
			binPath, errB = filepath.Abs(p)
			if errB == nil {
				_, errB = os.Stat(binPath)
			}
			return
		}
		tmpDir, errB = os.MkdirTemp("", "gin-demo-test-")
		if errB != nil {
			return
		}
		binPath = filepath.Join(tmpDir, "gin-demo")
		args := append([]string{"build"}, BuildFlags("v0.0.0-test")...)
		args = append(args, "-o", binPath, ".")
		cmd := exec.Command("go", args...)
		cmd.Dir = moduleRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			errB = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	return binPath, errB
}

// Cleanup removes the temporary build, if any.
func Cleanup() {
	if tmpDir != "" {
		_ = os.RemoveAll(tmpDir)
	}
}

// moduleRoot is app/, two levels above this file.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}
