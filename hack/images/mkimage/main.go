// Command mkimage builds a container image without a daemon: one gzip layer
// made of a root filesystem directory and/or single files, and the image
// config given by flags. It writes a docker-save style tarball (what
// `ctr -n k8s.io images import`, `kind load image-archive` and `docker load`
// read), then reads it back and checks it.
//
//	mkimage -rootfs DIR -file SRC:DST[:MODE] ... -tag NAME:TAG \
//	  -entrypoint '["/bin/x"]' -cmd '["-v"]' -user 65532:65532 -env K=V ... \
//	  -workdir /w -label k=v ... -expose 8080 ... -created UNIX -out x.tar
//	mkimage <the same flags> -verify x.tar   # only check an existing tarball
//
// Reproducible: entries sorted by name, every mtime set to -created, owners
// root unless the rootfs says otherwise (see scanRootfs), a gzip stream
// without name or time.
package main

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// defaultPath is the PATH a Dockerfile build gives an image that sets none.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(s string) error { *l = append(*l, s); return nil }

// spec is what the image is made of.
type spec struct {
	rootfs  string
	files   []string
	tag     name.Tag
	arch    string
	created time.Time
	config  v1.Config
	level   int // gzip level
}

func main() {
	var (
		s                          spec
		files, env, labels, expose list
		tag, entrypoint, cmd       string
		out, verifyOnly, created   string
	)
	flag.StringVar(&s.rootfs, "rootfs", "", "directory whose tree is the image's / (optional)")
	flag.Var(&files, "file", "SRC:DST[:MODE] a file to add (repeatable; wins over -rootfs)")
	flag.StringVar(&tag, "tag", "", "image name, e.g. registry.k8s.io/pause:3.10.1 (required)")
	flag.StringVar(&entrypoint, "entrypoint", "", `entrypoint, a JSON array: '["/pause"]'`)
	flag.StringVar(&cmd, "cmd", "", "cmd, a JSON array")
	flag.StringVar(&s.config.User, "user", "", "user[:group], e.g. 65532:65532")
	flag.Var(&env, "env", "K=V (repeatable; PATH defaults to Docker's)")
	flag.StringVar(&s.config.WorkingDir, "workdir", "", "working directory")
	flag.Var(&labels, "label", "k=v (repeatable)")
	flag.Var(&expose, "expose", "port[/proto] (repeatable)")
	flag.StringVar(&s.arch, "arch", runtime.GOARCH, "architecture of the image (linux only)")
	flag.StringVar(&created, "created", os.Getenv("SOURCE_DATE_EPOCH"), "creation time and every mtime, Unix seconds (default $SOURCE_DATE_EPOCH, else 0)")
	flag.IntVar(&s.level, "gzip-level", gzip.DefaultCompression, "gzip level of the layer (1-9)")
	flag.StringVar(&out, "out", "", "tarball to write")
	flag.StringVar(&verifyOnly, "verify", "", "do not build: check this tarball against the flags")
	flag.Parse()

	s.files = files
	err := s.parse(tag, entrypoint, cmd, created, env, labels, expose)
	if err == nil && verifyOnly != "" {
		var sum string
		if sum, err = verify(verifyOnly, s); err == nil {
			fmt.Printf("verified %s\n", sum)
		}
	} else if err == nil {
		err = build(s, out)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "mkimage: %v\n", err)
		os.Exit(1)
	}
}

func (s *spec) parse(tag, entrypoint, cmd, created string, env, labels, expose []string) (err error) {
	if tag == "" {
		return errors.New("-tag is required")
	}
	if s.tag, err = name.NewTag(tag); err != nil {
		return fmt.Errorf("-tag: %w", err)
	}
	if _, t, _ := strings.Cut(tag[strings.LastIndex(tag, "/")+1:], ":"); t == "" {
		return fmt.Errorf("-tag %q: no tag after the name", tag)
	}
	for _, a := range []struct {
		flag, value string
		p           *[]string
	}{{"entrypoint", entrypoint, &s.config.Entrypoint}, {"cmd", cmd, &s.config.Cmd}} {
		if a.value != "" {
			if err := json.Unmarshal([]byte(a.value), a.p); err != nil {
				return fmt.Errorf("-%s %q: not a JSON array of strings: %w", a.flag, a.value, err)
			}
		}
	}
	secs := int64(0)
	if created != "" {
		if secs, err = strconv.ParseInt(created, 10, 64); err != nil {
			return fmt.Errorf("-created %q: not Unix seconds", created)
		}
	}
	s.created = time.Unix(secs, 0).UTC()
	s.config.Env = env
	if !strings.Contains("\n"+strings.Join(env, "\n"), "\nPATH=") {
		s.config.Env = append([]string{defaultPath}, env...)
	}
	for _, e := range s.config.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return fmt.Errorf("-env %q: want K=V", e)
		}
	}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return fmt.Errorf("-label %q: want k=v", l)
		}
		if s.config.Labels == nil {
			s.config.Labels = map[string]string{}
		}
		s.config.Labels[k] = v
	}
	for _, p := range expose {
		if !strings.Contains(p, "/") {
			p += "/tcp"
		}
		if s.config.ExposedPorts == nil {
			s.config.ExposedPorts = map[string]struct{}{}
		}
		s.config.ExposedPorts[p] = struct{}{}
	}
	return nil
}

// build writes the layer to a temporary file (compressed once), assembles the
// image, writes the tarball and verifies it.
func build(s spec, out string) error {
	if out == "" {
		return errors.New("-out is required")
	}
	var entries []entry
	if s.rootfs != "" {
		var err error
		if entries, err = scanRootfs(s.rootfs); err != nil {
			return err
		}
	}
	for _, f := range s.files {
		e, err := fileEntry(f)
		if err != nil {
			return err
		}
		entries = append(entries, e)
	}
	if len(entries) == 0 {
		return errors.New("nothing to put in the image: give -rootfs and/or -file")
	}
	entries, err := merge(entries)
	if err != nil {
		return err
	}
	layerPath := out + ".layer.tmp"
	defer os.Remove(layerPath)
	if err := writeGzipLayer(layerPath, entries, s.created, s.level); err != nil {
		return err
	}
	img, err := image(layerPath, s)
	if err != nil {
		return err
	}
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, s.tag, img); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		return err
	}
	sum, err := verify(out, s)
	if err != nil {
		return fmt.Errorf("verify %s: %w", out, err)
	}
	fmt.Printf("wrote %s\n", sum)
	return nil
}

func writeGzipLayer(p string, entries []entry, mtime time.Time, level int) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	defer f.Close()
	zw, err := gzip.NewWriterLevel(f, level) // no name, no time in its header
	if err != nil {
		return err
	}
	if err := writeLayer(zw, entries, mtime); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return f.Close()
}

// image is the one-layer image of spec s.
func image(layerPath string, s spec) (v1.Image, error) {
	layer, err := tarball.LayerFromFile(layerPath)
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: s.created},
			CreatedBy: "kanary hack/images/mkimage",
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
	cf.OS, cf.Architecture = "linux", s.arch
	cf.Created = v1.Time{Time: s.created}
	cf.Config = s.config
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, err
	}
	return mutate.CreatedAt(img, v1.Time{Time: s.created})
}

// verify reads the tarball back: one image tagged s.tag, the config of s,
// one layer whose contents match the config's diff ID. It returns a summary.
func verify(p string, s spec) (string, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(p) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return "", err
	}
	if len(m) != 1 || len(m[0].RepoTags) != 1 || m[0].RepoTags[0] != s.tag.String() {
		return "", fmt.Errorf("want one image tagged %s, manifest.json has %+v", s.tag, m)
	}
	img, err := tarball.Image(opener, &s.tag)
	if err != nil {
		return "", err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return "", err
	}
	var errs []error
	if cf.OS != "linux" || cf.Architecture != s.arch {
		errs = append(errs, fmt.Errorf("platform %s/%s, want linux/%s", cf.OS, cf.Architecture, s.arch))
	}
	got, want := cf.Config, s.config
	for _, f := range []struct {
		name      string
		got, want any
	}{
		{"user", got.User, want.User},
		{"entrypoint", got.Entrypoint, want.Entrypoint},
		{"cmd", got.Cmd, want.Cmd},
		{"env", got.Env, want.Env},
		{"workdir", got.WorkingDir, want.WorkingDir},
		{"labels", got.Labels, want.Labels},
		{"exposed ports", got.ExposedPorts, want.ExposedPorts},
	} {
		g, _ := json.Marshal(f.got) // a nil and an empty slice or map are alike
		w, _ := json.Marshal(f.want)
		if string(g) != string(w) && !(isEmpty(g) && isEmpty(w)) {
			errs = append(errs, fmt.Errorf("%s %s, want %s", f.name, g, w))
		}
	}
	layers, err := img.Layers()
	if err != nil {
		return "", err
	}
	if len(layers) != 1 || len(cf.RootFS.DiffIDs) != 1 {
		return "", errors.Join(append(errs, fmt.Errorf("%d layers, want 1", len(layers)))...)
	}
	files, bytes, diffID, err := readLayer(layers[0])
	if err != nil {
		return "", err
	}
	if diffID != cf.RootFS.DiffIDs[0].Hex {
		errs = append(errs, fmt.Errorf("layer contents sha256:%s, config says %s", diffID, cf.RootFS.DiffIDs[0]))
	}
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	id, err := img.ConfigName() // the image ID containerd and Docker show (they make their own manifests)
	if err != nil {
		return "", err
	}
	gz, err := layers[0].Size()
	if err != nil {
		return "", err
	}
	st, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: %s id %s, %d entries, %.1f MiB unpacked, %.1f MiB gzip, tarball %d bytes",
		p, s.tag, id, files, mib(bytes), mib(gz), st.Size()), nil
}

func isEmpty(j []byte) bool {
	s := string(j)
	return s == "null" || s == "[]" || s == "{}" || s == `""`
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// readLayer counts the entries and the bytes of the regular files of a layer,
// and hashes its uncompressed stream.
func readLayer(l v1.Layer) (files int, size int64, sha string, err error) {
	rc, err := l.Uncompressed()
	if err != nil {
		return 0, 0, "", err
	}
	defer rc.Close()
	h := sha256.New()
	tr := tar.NewReader(io.TeeReader(rc, h))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, 0, "", err
		}
		files++
		size += hdr.Size
	}
	if _, err := io.Copy(h, rc); err != nil { // the padding after the end marker
		return 0, 0, "", err
	}
	return files, size, hex.EncodeToString(h.Sum(nil)), nil
}
