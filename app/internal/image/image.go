// Package image builds the gin-demo container image without a daemon: one
// layer with the static binary, /etc/passwd, /etc/group and the CA bundle,
// and the same config as app/Dockerfile's final stage (user 65532,
// entrypoint, port 8080, OCI labels, no shell). It writes a docker-save
// style tarball (what `docker load` and `kind load image-archive` read) and
// verifies one.
package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/kanary-dev/kanary/app/internal/staticbin"
)

// The final stage of app/Dockerfile, as constants. Keep the two in step.
const (
	Repository = "kanary/gin-demo"
	BinaryPath = "/gin-demo"
	CACertPath = "/etc/ssl/certs/ca-certificates.crt"
	User       = "65532:65532"
	Port       = "8080/tcp"
	// DefaultPath is the PATH a Dockerfile build gives a scratch image.
	DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	SourceURL   = "https://github.com/kanary-dev/kanary"
	Title       = "gin-demo"
	Description = "kanary's demo service: a Gin server with Prometheus metrics and fault knobs"
)

// Files are the regular files of the layer, by absolute path. Nothing else
// but their parent directories is in the image: no shell, no package manager.
var Files = []string{"/etc/group", "/etc/passwd", CACertPath, BinaryPath}

// Options are the inputs of Build.
type Options struct {
	Binary   string    // static gin-demo binary
	Passwd   string    // image/rootfs/etc/passwd
	Group    string    // image/rootfs/etc/group
	CACerts  string    // a CA bundle, e.g. Debian's /etc/ssl/certs/ca-certificates.crt
	Version  string    // image tag and org.opencontainers.image.version
	Revision string    // org.opencontainers.image.revision (git commit), optional
	Created  time.Time // image and file timestamps (reproducible: use the commit time)
	// GzipLevel of the layer; 0 means gzip.BestCompression (tests use BestSpeed).
	GzipLevel int
}

// Tag is the image reference for a version: kanary/gin-demo:<version>.
func Tag(version string) (name.Tag, error) {
	return name.NewTag(Repository + ":" + version)
}

// Labels are the OCI annotations of the image config.
func Labels(o Options) map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":       Title,
		"org.opencontainers.image.description": Description,
		"org.opencontainers.image.version":     o.Version,
		"org.opencontainers.image.source":      SourceURL,
		"org.opencontainers.image.created":     o.Created.UTC().Format(time.RFC3339),
	}
	if o.Revision != "" {
		l["org.opencontainers.image.revision"] = o.Revision
	}
	return l
}

type entry struct {
	path string // absolute
	mode int64
	data []byte // nil for a directory
}

// Build assembles the image.
func Build(o Options) (v1.Image, error) {
	read := func(p string) ([]byte, error) {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		if len(b) == 0 {
			return nil, fmt.Errorf("%s is empty", p)
		}
		return b, nil
	}
	bin, err := read(o.Binary)
	if err != nil {
		return nil, err
	}
	if err := staticbin.CheckReader(bytes.NewReader(bin)); err != nil {
		return nil, fmt.Errorf("%s: %w", o.Binary, err)
	}
	arch, err := staticbin.Arch(bytes.NewReader(bin))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.Binary, err)
	}
	passwd, err := read(o.Passwd)
	if err != nil {
		return nil, err
	}
	group, err := read(o.Group)
	if err != nil {
		return nil, err
	}
	certs, err := read(o.CACerts)
	if err != nil {
		return nil, err
	}
	if !bytes.Contains(certs, []byte("-----BEGIN CERTIFICATE-----")) {
		return nil, fmt.Errorf("%s holds no PEM certificate", o.CACerts)
	}
	if o.Version == "" {
		return nil, errors.New("no version")
	}
	if _, err := Tag(o.Version); err != nil {
		return nil, fmt.Errorf("version %q is not a valid tag: %w", o.Version, err)
	}

	layerTar, err := layerTar(o.Created, []entry{
		{path: "/etc", mode: 0o755},
		{path: "/etc/group", mode: 0o644, data: group},
		{path: "/etc/passwd", mode: 0o644, data: passwd},
		{path: "/etc/ssl", mode: 0o755},
		{path: "/etc/ssl/certs", mode: 0o755},
		{path: CACertPath, mode: 0o644, data: certs},
		{path: BinaryPath, mode: 0o755, data: bin},
	})
	if err != nil {
		return nil, err
	}
	level := o.GzipLevel
	if level == 0 {
		level = gzip.BestCompression
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithCompressionLevel(level))
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: o.Created},
			CreatedBy: "COPY /rootfs/ / # gin-demo binary, /etc/passwd, /etc/group, CA certificates",
			Comment:   "kanary mkimage",
		},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = arch
	cf.OS = "linux"
	cf.Created = v1.Time{Time: o.Created}
	cf.Config = v1.Config{
		User:         User,
		Entrypoint:   []string{BinaryPath},
		ExposedPorts: map[string]struct{}{Port: {}},
		Env:          []string{DefaultPath},
		WorkingDir:   "/",
		Labels:       Labels(o),
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, err
	}
	return mutate.CreatedAt(img, v1.Time{Time: o.Created})
}

// layerTar writes entries as a tar stream, owned by root, with one mtime.
func layerTar(mtime time.Time, entries []entry) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name:    strings.TrimPrefix(e.path, "/"),
			Mode:    e.mode,
			ModTime: mtime,
			Uid:     0, Gid: 0, Uname: "root", Gname: "root",
			Format: tar.FormatPAX,
		}
		if e.data == nil {
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteTarball writes img as a docker-save style tarball tagged
// kanary/gin-demo:<version>.
func WriteTarball(p, version string, img v1.Image) error {
	tag, err := Tag(version)
	if err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, p)
}

// Summary describes a verified image tarball.
type Summary struct {
	Tag               string
	Digest            string // manifest digest
	Arch              string
	Layers            int
	LayerCompressed   int64 // bytes of the gzip layer blob
	LayerUncompressed int64 // bytes of the layer tar
	BinaryBytes       int64
	TarballBytes      int64 // the whole file (what kind load reads)
	Files             []string
}

func (s Summary) String() string {
	return fmt.Sprintf("%s %s (%s)\n  layers: %d, layer %d bytes gzip / %d bytes tar, tarball %d bytes, binary %d bytes\n  files: %s",
		s.Tag, s.Digest, s.Arch, s.Layers, s.LayerCompressed, s.LayerUncompressed, s.TarballBytes, s.BinaryBytes,
		strings.Join(s.Files, " "))
}

// Verify reads a tarball written by WriteTarball and checks what the
// Dockerfile's final stage promises: one small layer holding exactly Files
// (no shell), a static binary, a non-root user known to /etc/passwd, the
// entrypoint, the port and the OCI labels. wantTag may be empty.
func Verify(p, wantTag string) (Summary, error) {
	var s Summary
	st, err := os.Stat(p)
	if err != nil {
		return s, err
	}
	s.TarballBytes = st.Size()

	mf, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(p) })
	if err != nil {
		return s, fmt.Errorf("manifest.json: %w", err)
	}
	if len(mf) != 1 || len(mf[0].RepoTags) != 1 {
		return s, fmt.Errorf("want one image with one tag, manifest.json has %+v", mf)
	}
	s.Tag = mf[0].RepoTags[0]
	if !strings.HasPrefix(s.Tag, Repository+":") {
		return s, fmt.Errorf("tag %q is not %s:<version>", s.Tag, Repository)
	}
	if wantTag != "" && s.Tag != wantTag {
		return s, fmt.Errorf("tag %q, want %q", s.Tag, wantTag)
	}
	img, err := tarball.ImageFromPath(p, nil)
	if err != nil {
		return s, err
	}
	d, err := img.Digest()
	if err != nil {
		return s, err
	}
	s.Digest = d.String()

	cf, err := img.ConfigFile()
	if err != nil {
		return s, err
	}
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	s.Arch = cf.Architecture
	if cf.OS != "linux" || cf.Architecture == "" {
		fail("platform %s/%s", cf.OS, cf.Architecture)
	}
	c := cf.Config
	if c.User != User {
		fail("user %q, want %q", c.User, User)
	}
	if !slices.Equal(c.Entrypoint, []string{BinaryPath}) || len(c.Cmd) != 0 {
		fail("entrypoint %q cmd %q, want [%s] and no cmd", c.Entrypoint, c.Cmd, BinaryPath)
	}
	if _, ok := c.ExposedPorts[Port]; !ok || len(c.ExposedPorts) != 1 {
		fail("exposed ports %v, want %s", c.ExposedPorts, Port)
	}
	for _, k := range []string{"title", "description", "version", "source", "created"} {
		if c.Labels["org.opencontainers.image."+k] == "" {
			fail("label org.opencontainers.image.%s missing", k)
		}
	}
	if v := c.Labels["org.opencontainers.image.version"]; s.Tag != Repository+":"+v {
		fail("version label %q does not match tag %q", v, s.Tag)
	}

	layers, err := img.Layers()
	if err != nil {
		return s, err
	}
	s.Layers = len(layers)
	if len(layers) != 1 {
		fail("%d layers, want 1", len(layers))
	}
	files := map[string]*tar.Header{}
	contents := map[string][]byte{}
	for _, l := range layers {
		if sz, err := l.Size(); err == nil {
			s.LayerCompressed += sz
		}
		n, err := readLayer(l, files, contents)
		if err != nil {
			return s, err
		}
		s.LayerUncompressed += n
	}
	for p := range files {
		s.Files = append(s.Files, p)
	}
	slices.Sort(s.Files)
	for _, f := range Files {
		if _, ok := files[f]; !ok {
			fail("image lacks %s", f)
		}
	}
	for f, h := range files {
		if h.Typeflag == tar.TypeDir {
			if !strings.HasPrefix(path.Dir(CACertPath)+"/", f+"/") {
				fail("unexpected directory %s", f)
			}
			continue
		}
		if !slices.Contains(Files, f) {
			fail("unexpected file %s", f)
		}
		if h.Uid != 0 || h.Mode&0o022 != 0 {
			fail("%s: uid %d mode %o; want root-owned, not group/world writable", f, h.Uid, h.Mode)
		}
	}
	if h, ok := files[BinaryPath]; ok {
		s.BinaryBytes = h.Size
		if h.Mode&0o111 == 0 {
			fail("%s is not executable", BinaryPath)
		}
		if err := staticbin.CheckReader(bytes.NewReader(contents[BinaryPath])); err != nil {
			fail("%s: %v", BinaryPath, err)
		}
	}
	uid, gid, _ := strings.Cut(User, ":")
	if !hasEntry(contents["/etc/passwd"], "nonroot", uid) {
		fail("/etc/passwd has no nonroot user with uid %s", uid)
	}
	if !hasEntry(contents["/etc/group"], "nonroot", gid) {
		fail("/etc/group has no nonroot group with gid %s", gid)
	}
	if s.LayerCompressed > 20<<20 {
		fail("layer is %d bytes compressed; a small layer is well under 20 MiB", s.LayerCompressed)
	}
	return s, errors.Join(errs...)
}

// readLayer adds the layer's entries to files (by absolute path, later
// layers win), keeps the contents of the files Verify inspects, and returns
// the size of the layer's tar stream.
func readLayer(l v1.Layer, files map[string]*tar.Header, contents map[string][]byte) (int64, error) {
	rc, err := l.Uncompressed()
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	cr := &countingReader{r: rc}
	tr := tar.NewReader(cr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, err
		}
		p := path.Clean("/" + h.Name)
		files[p] = h
		switch p {
		case BinaryPath, "/etc/passwd", "/etc/group":
			if contents[p], err = io.ReadAll(tr); err != nil {
				return 0, err
			}
		}
	}
	if _, err := io.Copy(io.Discard, cr); err != nil { // tar padding after the end marker
		return 0, err
	}
	return cr.n, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func hasEntry(file []byte, user, id string) bool {
	for line := range strings.SplitSeq(string(file), "\n") {
		f := strings.Split(line, ":")
		if len(f) >= 3 && f[0] == user && f[2] == id {
			return true
		}
	}
	return false
}
