// Package debugfile checks that a separate debug file belongs to a stripped
// binary: the release keeps the symbols out of the image but not lost
// (`objcopy --only-keep-debug` of the one link that `objcopy --strip-all`
// turns into the shipped binary), matched by the GNU build id.
package debugfile

import (
	"bytes"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// BuildID is the GNU build id note (NT_GNU_BUILD_ID) of an ELF file, in hex.
func BuildID(f *elf.File) (string, error) {
	for _, s := range f.Sections {
		if s.Type != elf.SHT_NOTE {
			continue
		}
		data, err := s.Data()
		if err != nil {
			continue // a NOBITS copy of the note carries no bytes
		}
		for len(data) >= 12 {
			order := f.ByteOrder
			nameSize, descSize, typ := order.Uint32(data), order.Uint32(data[4:]), order.Uint32(data[8:])
			name := data[12:min(len(data), 12+int(align4(nameSize)))]
			descStart := 12 + int(align4(nameSize))
			if descStart+int(descSize) > len(data) {
				break
			}
			if typ == 3 && string(bytes.TrimRight(name, "\x00")) == "GNU" { // NT_GNU_BUILD_ID
				return hex.EncodeToString(data[descStart : descStart+int(descSize)]), nil
			}
			data = data[descStart+int(align4(descSize)):]
		}
	}
	return "", errors.New("no GNU build id note")
}

func align4(n uint32) uint32 { return (n + 3) &^ 3 }

// Check returns nil when debug is the debug file of the stripped binary bin:
// the same build id, bin without symbols or DWARF, debug with both, and
// every allocated section of bin at the same address and size in debug (the
// same link), with main.main inside bin's .text.
func Check(bin, debug string) error {
	b, err := elf.Open(bin)
	if err != nil {
		return fmt.Errorf("%s: %w", bin, err)
	}
	defer b.Close()
	d, err := elf.Open(debug)
	if err != nil {
		return fmt.Errorf("%s: %w", debug, err)
	}
	defer d.Close()

	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	bid, err := BuildID(b)
	if err != nil {
		return fmt.Errorf("%s: %w", bin, err)
	}
	did, err := BuildID(d)
	if err != nil {
		return fmt.Errorf("%s: %w", debug, err)
	}
	if bid != did {
		fail("build id %s of %s differs from %s of %s: not the same link", bid, bin, did, debug)
	}
	for _, s := range b.Sections {
		if s.Name == ".symtab" || strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") {
			fail("%s is not stripped: it has %s", bin, s.Name)
		}
		if s.Flags&elf.SHF_ALLOC == 0 {
			continue
		}
		ds := d.Section(s.Name)
		if ds == nil || ds.Addr != s.Addr || ds.Size != s.Size {
			fail("section %s at %#x size %d in %s, not so in %s", s.Name, s.Addr, s.Size, bin, debug)
		}
	}
	if d.Section(".debug_info") == nil {
		fail("%s has no .debug_info", debug)
	}
	syms, err := d.Symbols()
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("%s: symbol table: %w", debug, err))...)
	}
	text := b.Section(".text")
	found := false
	for _, s := range syms {
		if s.Name == "main.main" {
			found = text != nil && s.Value >= text.Addr && s.Value < text.Addr+text.Size
		}
	}
	if !found {
		fail("main.main of %s is not in the .text of %s", debug, bin)
	}
	return errors.Join(errs...)
}
