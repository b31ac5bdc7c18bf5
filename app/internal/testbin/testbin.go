// Package testbin builds the gin-demo binary for tests (once per test
// process, with the release flags) and checks that it is statically linked.
// Only tests import it.
package testbin

import (
	"debug/elf"
	"errors"
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

// BuildFlags are the release build flags (kept in step with the Makefile).
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

// CheckStatic fails unless path is an ELF executable with no program
// interpreter, no dynamic section and no needed shared libraries.
func CheckStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var errs []error
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_INTERP:
			errs = append(errs, errors.New("has a PT_INTERP program header (dynamic loader)"))
		case elf.PT_DYNAMIC:
			errs = append(errs, errors.New("has a PT_DYNAMIC program header"))
		}
	}
	if f.Section(".interp") != nil {
		errs = append(errs, errors.New("has an .interp section"))
	}
	if f.Section(".dynamic") != nil {
		errs = append(errs, errors.New("has a .dynamic section"))
	}
	if libs, err := f.ImportedLibraries(); err == nil && len(libs) > 0 {
		errs = append(errs, fmt.Errorf("needs shared libraries %v", libs))
	}
	if f.Type != elf.ET_EXEC {
		errs = append(errs, fmt.Errorf("ELF type %v, want ET_EXEC", f.Type))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s is not statically linked: %w", path, err)
	}
	return nil
}
