package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/kanary-dev/kanary/app/internal/testbin"
)

// EnvImage names a tarball made by `make image` to verify as well.
const EnvImage = "KANARY_IMAGE_TAR"

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

func options(t *testing.T) Options {
	t.Helper()
	bin, err := testbin.Binary()
	if err != nil {
		t.Fatal(err)
	}
	certs := "/etc/ssl/certs/ca-certificates.crt"
	if _, err := os.Stat(certs); err != nil {
		// Any PEM bundle will do for the test; ship a tiny one.
		certs = filepath.Join(t.TempDir(), "ca.crt")
		pem := "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n"
		if err := os.WriteFile(certs, []byte(pem), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return Options{
		Binary:   bin,
		Passwd:   "../../image/rootfs/etc/passwd",
		Group:    "../../image/rootfs/etc/group",
		CACerts:  certs,
		Version:  "v1.0.0-test",
		Revision: "0123456789abcdef",
		Created:  time.Unix(1700000000, 0).UTC(),
		// make image uses BestCompression; the content checks do not
		// depend on the level, and this keeps the tests fast on 2 cores.
		GzipLevel: gzip.BestSpeed,
	}
}

func TestBuildWriteVerify(t *testing.T) {
	o := options(t)
	img, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "img.tar")
	if err := WriteTarball(p, o.Version, img); err != nil {
		t.Fatal(err)
	}
	s, err := Verify(p, "kanary/gin-demo:v1.0.0-test")
	if err != nil {
		t.Fatalf("%v\n%s", err, s)
	}
	t.Logf("%s", s)
	if s.Layers != 1 || s.BinaryBytes == 0 || s.LayerCompressed >= s.LayerUncompressed {
		t.Errorf("summary %+v", s)
	}
	want := []string{"/etc", "/etc/group", "/etc/passwd", "/etc/ssl", "/etc/ssl/certs", "/etc/ssl/certs/ca-certificates.crt", "/gin-demo"}
	if strings.Join(s.Files, " ") != strings.Join(want, " ") {
		t.Errorf("files %v, want %v", s.Files, want)
	}

	// The config, read back independently of Verify.
	back, err := tarball.ImageFromPath(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := back.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.User != "65532:65532" || len(c.Entrypoint) != 1 || c.Entrypoint[0] != "/gin-demo" {
		t.Errorf("user %q entrypoint %q", c.User, c.Entrypoint)
	}
	if _, ok := c.ExposedPorts["8080/tcp"]; !ok {
		t.Errorf("ports %v", c.ExposedPorts)
	}
	if c.Labels["org.opencontainers.image.version"] != "v1.0.0-test" ||
		c.Labels["org.opencontainers.image.revision"] != "0123456789abcdef" ||
		c.Labels["org.opencontainers.image.created"] != "2023-11-14T22:13:20Z" {
		t.Errorf("labels %v", c.Labels)
	}
	if cf.OS != "linux" || cf.Architecture == "" || !cf.Created.Time.Equal(o.Created) {
		t.Errorf("os %q arch %q created %v", cf.OS, cf.Architecture, cf.Created)
	}
	// No shell, no interpreter of any kind.
	for _, f := range s.Files {
		base := filepath.Base(f)
		if strings.HasPrefix(f, "/bin") || strings.HasPrefix(f, "/usr") || base == "sh" || base == "busybox" {
			t.Errorf("image contains %s", f)
		}
	}
}

// The same inputs give the same image digest (timestamps come from Created).
func TestBuildReproducible(t *testing.T) {
	o := options(t)
	a, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Fatalf("digests differ: %s %s", da, db)
	}
}

func TestBuildRejects(t *testing.T) {
	for name, mod := range map[string]func(*Options){
		"no version":     func(o *Options) { o.Version = "" },
		"bad tag":        func(o *Options) { o.Version = "v1 beta" },
		"missing passwd": func(o *Options) { o.Passwd = "/nonexistent/passwd" },
		"not a binary":   func(o *Options) { o.Binary = "../../image/rootfs/etc/passwd" },
		"no PEM":         func(o *Options) { o.CACerts = "../../image/rootfs/etc/group" },
	} {
		o := options(t)
		mod(&o)
		if _, err := Build(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// A dynamically linked binary is refused.
	for _, dyn := range []string{"/usr/bin/true", "/bin/true"} {
		if _, err := os.Stat(dyn); err != nil {
			continue
		}
		o := options(t)
		o.Binary = dyn
		if _, err := Build(o); err == nil || !strings.Contains(err.Error(), "statically") {
			t.Errorf("dynamic %s: %v", dyn, err)
		}
		break
	}
}

// Verify catches what a scratch image must not have: a shell, a package
// manager or an OS package database added in a second layer, or a root user.
func TestVerifyCatchesShellPackagesAndRoot(t *testing.T) {
	o := options(t)
	for _, c := range []struct {
		name  string
		files []string
		user  string
		want  []string
	}{
		{"shell", []string{"bin/sh"}, "", []string{"2 layers", "unexpected file /bin/sh"}},
		{"package manager", []string{"usr/bin/apt", "sbin/apk"}, "",
			[]string{"unexpected file /usr/bin/apt", "unexpected file /sbin/apk"}},
		{"package database", []string{"var/lib/dpkg/status", "lib/apk/db/installed"}, "",
			[]string{"unexpected file /var/lib/dpkg/status", "unexpected file /lib/apk/db/installed"}},
		{"root user", nil, "0:0", []string{`user "0:0", want "65532:65532"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			img, err := Build(o)
			if err != nil {
				t.Fatal(err)
			}
			if len(c.files) > 0 {
				var buf bytes.Buffer
				tw := tar.NewWriter(&buf)
				for _, f := range c.files {
					_ = tw.WriteHeader(&tar.Header{Name: f, Mode: 0o755, Size: 2, Typeflag: tar.TypeReg})
					_, _ = tw.Write([]byte("#!"))
				}
				_ = tw.Close()
				extra, err := tarball.LayerFromReader(bytes.NewReader(buf.Bytes()))
				if err != nil {
					t.Fatal(err)
				}
				if img, err = mutate.AppendLayers(img, extra); err != nil {
					t.Fatal(err)
				}
			}
			if c.user != "" {
				cf, err := img.ConfigFile()
				if err != nil {
					t.Fatal(err)
				}
				cfg := cf.Config
				cfg.User = c.user
				if img, err = mutate.Config(img, cfg); err != nil {
					t.Fatal(err)
				}
			}
			p := filepath.Join(t.TempDir(), "bad.tar")
			if err := WriteTarball(p, o.Version, img); err != nil {
				t.Fatal(err)
			}
			_, err = Verify(p, "")
			for _, w := range c.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Verify: %v; want %q", err, w)
				}
			}
		})
	}
}

// `make image` sets KANARY_IMAGE_TAR so the artifact itself is verified.
func TestVerifyBuiltTarball(t *testing.T) {
	p := os.Getenv(EnvImage)
	if p == "" {
		t.Skip(EnvImage + " not set (make image sets it)")
	}
	s, err := Verify(p, "")
	if err != nil {
		t.Fatalf("%v\n%s", err, s)
	}
	t.Logf("%s", s)
}
