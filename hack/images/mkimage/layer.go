package main

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// An entry is one member of the layer.
type entry struct {
	hdr *tar.Header // Name is relative, without a leading or trailing slash
	src string      // regular files: where the contents are read from
	id  fileID      // regular files with more than one name: the inode
}

type fileID struct{ dev, ino uint64 }

// scanRootfs lists the tree under dir (not dir itself): directories, regular
// files, symlinks and hardlinks, with their permission bits (setuid, setgid
// and sticky too) and owners. What the user running mkimage owns is recorded
// as root's: an unprivileged build gives root-owned files, and a build as
// root keeps what it chowned.
func scanRootfs(dir string) ([]entry, error) {
	var out []entry
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		fi, err := d.Info() // of a symlink itself
		if err != nil {
			return err
		}
		e := entry{hdr: &tar.Header{Name: filepath.ToSlash(rel), Mode: modeBits(fi.Mode())}}
		switch t := fi.Mode().Type(); {
		case t == fs.ModeDir:
			e.hdr.Typeflag = tar.TypeDir
		case t == 0:
			e.hdr.Typeflag, e.hdr.Size, e.src = tar.TypeReg, fi.Size(), p
		case t == fs.ModeSymlink:
			e.hdr.Typeflag = tar.TypeSymlink
			if e.hdr.Linkname, err = os.Readlink(p); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unsupported file type %v", p, t)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			e.hdr.Uid = owner(st.Uid, os.Getuid())
			e.hdr.Gid = owner(st.Gid, os.Getgid())
			if e.hdr.Typeflag == tar.TypeReg && st.Nlink > 1 {
				e.id = fileID{uint64(st.Dev), st.Ino}
			}
		}
		out = append(out, e)
		return nil
	})
	return out, err
}

func owner(id uint32, self int) int {
	if int(id) == self {
		return 0
	}
	return int(id)
}

// modeBits are the permission bits of a tar header.
func modeBits(m fs.FileMode) int64 {
	b := int64(m.Perm())
	for flag, bit := range map[fs.FileMode]int64{fs.ModeSetuid: 0o4000, fs.ModeSetgid: 0o2000, fs.ModeSticky: 0o1000} {
		if m&flag != 0 {
			b |= bit
		}
	}
	return b
}

// fileEntry parses SRC:DST[:MODE] (MODE octal; default: SRC's permissions).
// The file is owned by root.
func fileEntry(spec string) (entry, error) {
	parts := strings.Split(spec, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || !path.IsAbs(parts[1]) {
		return entry{}, fmt.Errorf("-file %q: want SRC:DST[:MODE] with an absolute DST", spec)
	}
	fi, err := os.Stat(parts[0])
	if err != nil {
		return entry{}, err
	}
	if !fi.Mode().IsRegular() {
		return entry{}, fmt.Errorf("-file %q: %s is not a regular file", spec, parts[0])
	}
	mode := modeBits(fi.Mode())
	if len(parts) == 3 {
		m, err := strconv.ParseUint(parts[2], 8, 12)
		if err != nil {
			return entry{}, fmt.Errorf("-file %q: mode %q is not octal", spec, parts[2])
		}
		mode = int64(m)
	}
	name := strings.TrimPrefix(path.Clean(parts[1]), "/")
	if name == "" {
		return entry{}, fmt.Errorf("-file %q: DST is /", spec)
	}
	return entry{hdr: &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: fi.Size(), Mode: mode}, src: parts[0]}, nil
}

// merge orders the entries for the layer: a later entry replaces an earlier
// one of the same name (files given with -file win over the rootfs), missing
// parent directories are added (0755, root), everything is sorted by name,
// and the second and later names of a hardlinked file become links to the
// first.
func merge(entries []entry) ([]entry, error) {
	byName := map[string]int{}
	var out []entry
	for _, e := range entries {
		if i, ok := byName[e.hdr.Name]; ok {
			out[i] = e
			continue
		}
		byName[e.hdr.Name] = len(out)
		out = append(out, e)
	}
	for _, e := range slices.Clone(out) {
		for dir := path.Dir(e.hdr.Name); dir != "."; dir = path.Dir(dir) {
			if i, ok := byName[dir]; ok {
				if out[i].hdr.Typeflag != tar.TypeDir {
					return nil, fmt.Errorf("%s: parent %s is not a directory", e.hdr.Name, dir)
				}
				continue
			}
			byName[dir] = len(out)
			out = append(out, entry{hdr: &tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755}})
		}
	}
	slices.SortFunc(out, func(a, b entry) int { return strings.Compare(a.hdr.Name, b.hdr.Name) })
	first := map[fileID]string{}
	for i, e := range out {
		if e.id == (fileID{}) {
			continue
		}
		if name, ok := first[e.id]; ok {
			out[i].hdr.Typeflag, out[i].hdr.Linkname, out[i].hdr.Size, out[i].src = tar.TypeLink, name, 0, ""
		} else {
			first[e.id] = e.hdr.Name
		}
	}
	return out, nil
}

// writeLayer writes the entries as a tar stream, every one with the same
// modification time (and no access or change time).
func writeLayer(w io.Writer, entries []entry, mtime time.Time) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		h := *e.hdr
		h.ModTime, h.Format = mtime, tar.FormatPAX
		if h.Typeflag == tar.TypeDir {
			h.Name += "/"
		}
		if err := tw.WriteHeader(&h); err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
		if h.Typeflag == tar.TypeReg {
			if err := copyFile(tw, e.src, h.Size); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}

func copyFile(w io.Writer, src string, size int64) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(w, f)
	if err == nil && n != size {
		err = fmt.Errorf("%s changed size while being read", src)
	}
	return err
}
