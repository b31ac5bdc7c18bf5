package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rootfs makes a small tree with a directory of mode 0750, a sticky /tmp, an
// executable, a relative and an absolute symlink and two names of one file.
func rootfs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"etc", "usr/bin", "usr/lib", "private", "tmp"} {
		must(os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	must(os.Chmod(filepath.Join(dir, "private"), 0o750))
	must(os.Chmod(filepath.Join(dir, "tmp"), 0o777|os.ModeSticky))
	must(os.WriteFile(filepath.Join(dir, "etc/os-release"), []byte("ID=test\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "usr/bin/tool"), []byte("#!/bin/true\n"), 0o755))
	must(os.Symlink("usr/lib", filepath.Join(dir, "lib")))
	must(os.Symlink("/usr/bin/tool", filepath.Join(dir, "usr/bin/alias")))
	must(os.Link(filepath.Join(dir, "usr/bin/tool"), filepath.Join(dir, "usr/bin/a-tool")))
	// umask may have cleared bits: set the modes the test expects.
	must(os.Chmod(filepath.Join(dir, "etc/os-release"), 0o644))
	must(os.Chmod(filepath.Join(dir, "usr/bin/tool"), 0o755))
	return dir
}

func layerOf(t *testing.T, dir string, files ...string) []byte {
	t.Helper()
	entries, err := scanRootfs(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		e, err := fileEntry(f)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e)
	}
	if entries, err = merge(entries); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := writeLayer(&buf, entries, time.Unix(1700000000, 0)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestLayerKeepsModesLinksAndOrder(t *testing.T) {
	dir := rootfs(t)
	extra := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(extra, []byte("root:x:0:0::/:/sbin/nologin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	layer := layerOf(t, dir, extra+":/etc/passwd:0644", extra+":/opt/app/conf")

	type got struct {
		typ          byte
		mode         int64
		link, data   string
		uid, gid     int
		mtime, atime time.Time
	}
	entries := map[string]got{}
	var names []string
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		names = append(names, h.Name)
		entries[h.Name] = got{h.Typeflag, h.Mode, h.Linkname, string(data), h.Uid, h.Gid, h.ModTime, h.AccessTime}
	}
	want := []string{"etc/", "etc/os-release", "etc/passwd", "lib", "opt/", "opt/app/", "opt/app/conf",
		"private/", "tmp/", "usr/", "usr/bin/", "usr/bin/a-tool", "usr/bin/alias", "usr/bin/tool", "usr/lib/"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("entries\n %v\nwant\n %v", names, want)
	}
	for _, c := range []struct {
		name string
		typ  byte
		mode int64
		link string
	}{
		{"private/", tar.TypeDir, 0o750, ""},
		{"tmp/", tar.TypeDir, 0o1777, ""},
		{"opt/app/", tar.TypeDir, 0o755, ""}, // a parent added for -file
		{"etc/os-release", tar.TypeReg, 0o644, ""},
		{"etc/passwd", tar.TypeReg, 0o644, ""},   // MODE given
		{"opt/app/conf", tar.TypeReg, 0o600, ""}, // the source's mode
		{"lib", tar.TypeSymlink, 0o777, "usr/lib"},
		{"usr/bin/alias", tar.TypeSymlink, 0o777, "/usr/bin/tool"},
		// Sorted first, "a-tool" is the file and "tool" the hardlink to it.
		{"usr/bin/a-tool", tar.TypeReg, 0o755, ""},
	} {
		g := entries[c.name]
		if g.typ != c.typ || g.mode != c.mode || g.link != c.link {
			t.Errorf("%s: type %c mode %o link %q, want %c %o %q", c.name, g.typ, g.mode, g.link, c.typ, c.mode, c.link)
		}
	}
	if g := entries["usr/bin/tool"]; g.typ != tar.TypeLink || g.link != "usr/bin/a-tool" {
		t.Errorf("usr/bin/tool: type %c link %q, want a hardlink to usr/bin/a-tool", g.typ, g.link)
	}
	if g := entries["usr/bin/a-tool"]; g.data != "#!/bin/true\n" {
		t.Errorf("usr/bin/a-tool holds %q", g.data)
	}
	for n, g := range entries {
		if !g.mtime.Equal(time.Unix(1700000000, 0)) || !g.atime.IsZero() {
			t.Errorf("%s: mtime %v atime %v, want the fixed mtime and no atime", n, g.mtime, g.atime)
		}
		if os.Getuid() == 0 && (g.uid != 0 || g.gid != 0) { // files of the user running it count as root's
			t.Errorf("%s: owner %d:%d, want 0:0", n, g.uid, g.gid)
		}
	}
}

func TestLayerIsDeterministic(t *testing.T) {
	dir := rootfs(t)
	a := layerOf(t, dir)
	// New mtimes and atimes on the source files change nothing.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "etc/os-release"), later, later); err != nil {
		t.Fatal(err)
	}
	if b := layerOf(t, dir); !bytes.Equal(a, b) {
		t.Error("the same tree gave two different layers")
	}
}

func TestFileSpecErrors(t *testing.T) {
	f := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, spec := range []string{f, f + ":rel/path", f + ":/x:999", f + ":/", "/does/not/exist:/x", filepath.Dir(f) + ":/x"} {
		if _, err := fileEntry(spec); err == nil {
			t.Errorf("fileEntry(%q) accepted", spec)
		}
	}
}

func TestMergeRefusesFileUnderSymlink(t *testing.T) {
	dir := rootfs(t)
	entries, err := scanRootfs(dir)
	if err != nil {
		t.Fatal(err)
	}
	e, err := fileEntry(filepath.Join(dir, "etc/os-release") + ":/lib/x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := merge(append(entries, e)); err == nil {
		t.Error("merge put a file under a symlink")
	}
}

func testSpec(t *testing.T, dir string) spec {
	t.Helper()
	var s spec
	err := s.parse("example.test/img:v1", `["/usr/bin/tool"]`, `["--flag"]`, "1700000000",
		[]string{"A=1"}, []string{"org.opencontainers.image.title=img"}, []string{"8080"})
	if err != nil {
		t.Fatal(err)
	}
	s.rootfs, s.arch, s.level, s.config.User = dir, "amd64", gzip.BestSpeed, "65532:65532"
	return s
}

func TestBuildVerifyReproducible(t *testing.T) {
	dir := rootfs(t)
	out := t.TempDir()
	var digests []string
	for i, p := range []string{filepath.Join(out, "a.tar"), filepath.Join(out, "b.tar")} {
		if i == 1 { // a rebuild after the tree's mtimes changed
			later := time.Now().Add(time.Hour)
			if err := os.Chtimes(filepath.Join(dir, "usr/bin/tool"), later, later); err != nil {
				t.Fatal(err)
			}
		}
		s := testSpec(t, dir)
		if err := build(s, p); err != nil {
			t.Fatal(err)
		}
		sum, err := verify(p, s)
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, strings.Fields(sum)[3]) // "PATH: TAG id sha256:...,"
	}
	if digests[0] != digests[1] || !strings.HasPrefix(digests[0], "sha256:") {
		t.Errorf("digests %v, want two equal ones", digests)
	}
	a, _ := os.ReadFile(filepath.Join(out, "a.tar"))
	b, _ := os.ReadFile(filepath.Join(out, "b.tar"))
	if !bytes.Equal(a, b) {
		t.Error("the two tarballs differ")
	}

	// verify compares with what the flags ask for.
	s := testSpec(t, dir)
	s.config.User = "0"
	if _, err := verify(filepath.Join(out, "a.tar"), s); err == nil || !strings.Contains(err.Error(), "user") {
		t.Errorf("verify with another user: %v", err)
	}
	s = testSpec(t, dir)
	if err := s.parse("example.test/other:v1", "", "", "0", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := verify(filepath.Join(out, "a.tar"), s); err == nil {
		t.Error("verify with another tag passed")
	}
}

func TestParse(t *testing.T) {
	var s spec
	if err := s.parse("reg.test/a:1", `["x"]`, `["x"]`, "", []string{"PATH=/bin"}, nil, []string{"53/udp"}); err != nil {
		t.Fatal(err)
	}
	if len(s.config.Entrypoint) != 1 || len(s.config.Cmd) != 1 || len(s.config.Env) != 1 {
		t.Errorf("config %+v: want the entrypoint, the cmd and only the given PATH", s.config)
	}
	if _, ok := s.config.ExposedPorts["53/udp"]; !ok || !s.created.Equal(time.Unix(0, 0)) {
		t.Errorf("ports %v created %v", s.config.ExposedPorts, s.created)
	}
	for _, bad := range [][]string{{"no-tag"}, {"a:1", "notjson"}, {"a:1", "", "", "yesterday"}} {
		args := append(bad, "", "", "")[:4]
		if err := new(spec).parse(args[0], args[1], args[2], args[3], nil, nil, nil); err == nil {
			t.Errorf("parse%q accepted", bad)
		}
	}
}
