package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/apiwarden/apiwarden/internal/testenv"
)

// TestImage builds the real image of cmd/manager into a temporary
// directory, reads it back from the OCI layout archive with
// go-containerregistry, and checks what a cluster relies on: a non-root
// user, the entrypoint, the OCI labels, a static /manager that runs, and no
// file but the base files and the binary in any layer.
func TestImage(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the image's binary is built for and run on linux")
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "manager")
	start := time.Now()
	if err := BuildManager(root, bin, runtime.GOARCH, "-s -w"); err != nil {
		t.Fatal(err)
	}
	t.Logf("static manager built in %s", time.Since(start).Round(time.Second))
	o := Options{Binary: bin, CABundle: "/etc/ssl/certs/ca-certificates.crt", Arch: runtime.GOARCH, Version: "v0.0.0-test", Revision: "abc123", Created: time.Unix(1700000000, 0).UTC()}
	if _, err := os.Stat(o.CABundle); err != nil {
		t.Fatalf("the build machine has no CA bundle to copy: %v", err)
	}
	img, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	layoutDir, archive := filepath.Join(dir, "layout"), filepath.Join(dir, "image.tar")
	if err := WriteLayout(img, layoutDir, o.Version); err != nil {
		t.Fatal(err)
	}
	if err := WriteArchive(layoutDir, archive); err != nil {
		t.Fatal(err)
	}

	// Read the image back from the archive, as skopeo's oci-archive would.
	unpacked := filepath.Join(dir, "unpacked")
	untar(t, archive, unpacked)
	index, err := layout.ImageIndexFromPath(unpacked)
	if err != nil {
		t.Fatal(err)
	}
	im, err := index.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != o.Version {
		t.Fatalf("the layout holds %d images, want 1 tagged %s: %+v", len(im.Manifests), o.Version, im.Manifests)
	}
	got, err := index.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	if im.Manifests[0].Digest != want {
		t.Errorf("the archive's image is %s, the built one %s", im.Manifests[0].Digest, want)
	}
	if mt, _ := got.MediaType(); mt != "application/vnd.oci.image.manifest.v1+json" {
		t.Errorf("manifest media type %s, want OCI", mt)
	}

	cfg, err := got.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Config.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532", cfg.Config.User)
	}
	if !slices.Equal(cfg.Config.Entrypoint, []string{"/manager"}) || len(cfg.Config.Cmd) != 0 {
		t.Errorf("entrypoint %q cmd %q, want [/manager] and no cmd", cfg.Config.Entrypoint, cfg.Config.Cmd)
	}
	if cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s", cfg.OS, cfg.Architecture)
	}
	for k, v := range map[string]string{
		"org.opencontainers.image.title":    "apiwarden",
		"org.opencontainers.image.version":  o.Version,
		"org.opencontainers.image.revision": o.Revision,
		"org.opencontainers.image.source":   "https://github.com/apiwarden/apiwarden",
		"org.opencontainers.image.created":  "2023-11-14T22:13:20Z",
	} {
		if cfg.Config.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, cfg.Config.Labels[k], v)
		}
	}

	// Every file of every layer, by layer.
	layers, err := got.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 2 {
		t.Fatalf("%d layers, want 2 (base, manager)", len(layers))
	}
	files := make([]map[string]*tar.Header, len(layers))
	var managerData []byte
	for i, l := range layers {
		files[i] = map[string]*tar.Header{}
		readLayer(t, l, func(h *tar.Header, r io.Reader) {
			files[i][h.Name] = h
			if h.Name == "manager" {
				managerData, _ = io.ReadAll(r)
			}
			if h.ModTime.Unix() != o.Created.Unix() {
				t.Errorf("%s has time %s, want %s (reproducible builds)", h.Name, h.ModTime, o.Created)
			}
		})
	}
	var wantBase []string
	for _, e := range baseFiles() {
		wantBase = append(wantBase, e.name)
	}
	wantBase = append(wantBase, "etc/ssl/certs/ca-certificates.crt")
	if got := sortedKeys(files[0]); !slices.Equal(got, sorted(wantBase)) {
		t.Errorf("base layer holds %v, want exactly %v", got, sorted(wantBase))
	}
	if got := sortedKeys(files[1]); !slices.Equal(got, []string{"manager"}) {
		t.Errorf("manager layer holds %v, want exactly [manager]: nothing from the repository but the binary", got)
	}
	if h := files[1]["manager"]; h == nil || h.Mode&0o111 == 0 || h.Uid != 0 {
		t.Errorf("/manager is not an executable owned by root: %+v", h)
	}
	if h := files[0]["tmp/"]; h == nil || h.Mode != 0o1777 {
		t.Errorf("/tmp is not world-writable and sticky: %+v", h)
	}
	if h := files[0]["etc/passwd"]; h == nil {
		t.Error("no /etc/passwd")
	}
	binData, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(managerData, binData) {
		t.Error("/manager in the image is not the binary that was built")
	}

	// The binary is static (the image has no libc or loader) and runs.
	extracted := filepath.Join(dir, "extracted-manager")
	if err := os.WriteFile(extracted, managerData, 0o755); err != nil {
		t.Fatal(err)
	}
	ef, err := elf.Open(extracted)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("/manager is dynamically linked: it needs a loader the image does not have")
		}
	}
	ef.Close()
	out, err := exec.Command(extracted, "-h").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "-roles") {
		t.Errorf("/manager -h: %v\n%s", err, out)
	}

	// Building again from the same inputs gives the same image.
	again, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := again.Digest(); d != want {
		t.Errorf("a second build gave %s, the first %s: the image is not reproducible", d, want)
	}
}

// readLayer calls fn for every entry of a layer's uncompressed tar.
func readLayer(t *testing.T, l v1.Layer, fn func(*tar.Header, io.Reader)) {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		fn(h, tr)
	}
}

// untar extracts a tar file of regular files and directories into dir.
func untar(t *testing.T, archive, dir string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(path, dir+string(os.PathSeparator)) {
			t.Fatalf("archive entry %q leaves the directory", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("archive entry %q of type %c", h.Name, h.Typeflag)
		}
	}
}

func sortedKeys(m map[string]*tar.Header) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return sorted(out)
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
