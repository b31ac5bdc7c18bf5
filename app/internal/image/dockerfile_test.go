package image

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// No daemon here to build app/Dockerfile, so check that its final stage says
// what Build does: the two must stay in step.
func TestDockerfileMatchesBuild(t *testing.T) {
	raw, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	// Join continuation lines, drop comments.
	text := regexp.MustCompile(`\\\n\s*`).ReplaceAllString(string(raw), " ")
	var lines []string
	for l := range strings.SplitSeq(text, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	last := -1
	for i, l := range lines {
		if strings.HasPrefix(l, "FROM ") {
			last = i
		}
	}
	if last < 0 {
		t.Fatal("no FROM")
	}
	builder, final := strings.Join(lines[:last], "\n"), lines[last:]
	if final[0] != "FROM scratch" {
		t.Errorf("final stage %q, want FROM scratch", final[0])
	}

	var labels = map[string]string{}
	var copies, users, exposes, entrypoints []string
	labelRE := regexp.MustCompile(`(org\.opencontainers\.image\.[a-z]+)="([^"]*)"`)
	for _, l := range final[1:] {
		instr, rest, _ := strings.Cut(l, " ")
		switch instr {
		case "LABEL":
			for _, m := range labelRE.FindAllStringSubmatch(rest, -1) {
				labels[m[1]] = m[2]
			}
		case "COPY":
			copies = append(copies, rest)
		case "USER":
			users = append(users, rest)
		case "EXPOSE":
			exposes = append(exposes, rest)
		case "ENTRYPOINT":
			entrypoints = append(entrypoints, rest)
		case "ARG":
		default:
			t.Errorf("unexpected instruction in the final stage: %s", l)
		}
	}
	if !slices.Equal(copies, []string{"--from=builder /rootfs/ /"}) {
		t.Errorf("final stage COPY %q: want one COPY --from=builder /rootfs/ / (one layer)", copies)
	}
	if !slices.Equal(users, []string{User}) {
		t.Errorf("USER %q, want %s", users, User)
	}
	if !slices.Equal(exposes, []string{strings.TrimSuffix(Port, "/tcp")}) {
		t.Errorf("EXPOSE %q, want %s", exposes, Port)
	}
	var ep []string
	if len(entrypoints) != 1 || json.Unmarshal([]byte(entrypoints[0]), &ep) != nil || !slices.Equal(ep, []string{BinaryPath}) {
		t.Errorf("ENTRYPOINT %q, want [%q] in exec form", entrypoints, BinaryPath)
	}

	want := Labels(Options{Version: "x", Revision: "y"})
	for k, v := range want {
		got, ok := labels[k]
		switch {
		case !ok:
			t.Errorf("Dockerfile lacks label %s", k)
		case strings.HasPrefix(got, "${"):
			// version, revision, created: build args
		case got != v:
			t.Errorf("label %s: Dockerfile %q, mkimage %q", k, got, v)
		}
	}
	for k := range labels {
		if _, ok := want[k]; !ok {
			t.Errorf("label %s only in the Dockerfile", k)
		}
	}

	// The builder stage fills /rootfs with the same files and flags.
	for _, s := range []string{
		"CGO_ENABLED=0", "-trimpath", "-tags nomsgpack", `-ldflags "-X main.version=${VERSION}"`,
		"objcopy --only-keep-debug /out/gin-demo.full /out/gin-demo.debug",
		"objcopy --strip-all /out/gin-demo.full /rootfs" + BinaryPath,
		"COPY image/rootfs/etc/passwd image/rootfs/etc/group /rootfs/etc/",
		"cp /etc/ssl/certs/ca-certificates.crt /rootfs" + dirSlash(CACertPath),
		"--mount=type=cache,target=/go/pkg/mod", "--mount=type=cache,target=/root/.cache/go-build",
	} {
		if !strings.Contains(builder, s) {
			t.Errorf("builder stage lacks %q", s)
		}
	}
}

// dirSlash is the directory part with a trailing slash, as `cp` is written.
func dirSlash(p string) string { return p[:strings.LastIndex(p, "/")+1] }

// .dockerignore lets in exactly what the builder copies.
func TestDockerignore(t *testing.T) {
	raw, err := os.ReadFile("../../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	for _, s := range []string{"\n*\n", "!go.mod", "!go.sum", "!*.go", "!image/rootfs/etc/passwd", "!image/rootfs/etc/group", "*_test.go"} {
		if !strings.Contains(text, s) {
			t.Errorf(".dockerignore lacks %q", strings.TrimSpace(s))
		}
	}
}
