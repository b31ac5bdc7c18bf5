// Package staticbin checks that an ELF executable is statically linked.
package staticbin

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
)

// Check fails unless path is a statically linked ELF executable.
func Check(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := CheckReader(f); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// CheckReader fails unless r holds an ELF executable (ET_EXEC) with no
// program interpreter, no dynamic section and no needed shared libraries.
func CheckReader(r io.ReaderAt) error {
	f, err := elf.NewFile(r)
	if err != nil {
		return fmt.Errorf("not an ELF file: %w", err)
	}
	defer f.Close()
	var errs []error
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_INTERP:
			errs = append(errs, errors.New("has a PT_INTERP program header (needs a dynamic loader)"))
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
		return fmt.Errorf("not statically linked: %w", err)
	}
	return nil
}

// Arch is the GOARCH name of an ELF file's machine ("amd64", "arm64", ...).
func Arch(r io.ReaderAt) (string, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return "", fmt.Errorf("not an ELF file: %w", err)
	}
	defer f.Close()
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	case elf.EM_386:
		return "386", nil
	case elf.EM_ARM:
		return "arm", nil
	case elf.EM_PPC64:
		return "ppc64le", nil
	case elf.EM_S390:
		return "s390x", nil
	case elf.EM_RISCV:
		return "riscv64", nil
	}
	return "", fmt.Errorf("unsupported ELF machine %v", f.Machine)
}
