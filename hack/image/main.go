// Command image builds apiwarden's container image without Docker or a base
// image: `make image` runs it. It compiles cmd/manager as a static binary
// (CGO_ENABLED=0), makes a minimal base layer in the build (/etc/passwd and
// /etc/group with the nonroot user 65532, the build machine's CA
// certificates, /tmp, and the nonroot user's home), adds the binary as
// /manager in a second layer, and writes the image as an OCI image layout
// (a directory) and as that layout in one tar file (an "oci-archive"), with
// go-containerregistry.
//
// The image is reproducible: every file time is SOURCE_DATE_EPOCH (or 0),
// and nothing from the build machine but the CA bundle and the binary goes
// in, so the same sources give the same digest.
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// NonRootUID is the user (and group) the image runs as; the Deployments set
// the same runAsUser.
const NonRootUID = 65532

// ManagerPath is the binary's path in the image, and its entrypoint.
const ManagerPath = "/manager"

// CABundlePath is where the image holds the CA certificates, where Go's
// crypto/x509 looks for them on Linux.
const CABundlePath = "/etc/ssl/certs/ca-certificates.crt"

// Options say what to put into the image.
type Options struct {
	// Binary is the static manager binary for Arch.
	Binary string
	// CABundle is the PEM file of CA certificates copied into the image.
	CABundle string
	// Arch is the image's GOARCH; the OS is always linux.
	Arch string
	// Version and Revision become labels (org.opencontainers.image.version
	// and .revision).
	Version, Revision string
	// Created is the time of every file and of the image.
	Created time.Time
}

func main() {
	var o Options
	var out, layoutDir, ldflags string
	flag.StringVar(&o.Binary, "binary", "", "A static manager binary to put in the image; when empty, cmd/manager is built with CGO_ENABLED=0.")
	flag.StringVar(&o.CABundle, "ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "PEM CA certificates to copy into the image (the build machine's).")
	flag.StringVar(&o.Arch, "arch", runtime.GOARCH, "GOARCH of the image.")
	flag.StringVar(&o.Version, "version", "dev", "apiwarden's version, for the version label.")
	flag.StringVar(&o.Revision, "revision", "", "The source's git revision, for the revision label.")
	flag.StringVar(&ldflags, "ldflags", "", "-ldflags for building the manager.")
	flag.StringVar(&out, "out", "dist/apiwarden-image.tar", "Where to write the image as an OCI layout tar file (skopeo's oci-archive).")
	flag.StringVar(&layoutDir, "layout", "dist/image", "Where to write the image as an OCI layout directory (crane push takes it).")
	flag.Parse()
	if err := run(o, ldflags, out, layoutDir); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(o Options, ldflags, out, layoutDir string) error {
	o.Created = time.Unix(0, 0).UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH=%q: %w", s, err)
		}
		o.Created = time.Unix(sec, 0).UTC()
	}
	if o.Binary == "" {
		dir, err := os.MkdirTemp("", "apiwarden-image-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.Binary = filepath.Join(dir, "manager")
		if err := BuildManager(".", o.Binary, o.Arch, ldflags); err != nil {
			return err
		}
	}
	img, err := Build(o)
	if err != nil {
		return err
	}
	if err := WriteLayout(img, layoutDir, o.Version); err != nil {
		return err
	}
	if err := WriteArchive(layoutDir, out); err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s and %s (image %s)\n", layoutDir, out, digest)
	return nil
}

// BuildManager compiles cmd/manager of the module in root into out as a
// static linux binary for arch.
func BuildManager(root, out, arch, ldflags string) error {
	args := []string{"build", "-trimpath", "-o", out}
	if ldflags != "" {
		args = append(args, "-ldflags", ldflags)
	}
	cmd := exec.Command("go", append(args, "./cmd/manager")...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/manager: %w", err)
	}
	return nil
}

// entry is one file or directory of a layer.
type entry struct {
	name     string
	mode     int64
	uid      int
	data     []byte
	isDir    bool
	linkname string
}

// baseFiles are the files of the base layer, but the CA bundle: a passwd and
// group naming root and nonroot (so tools that look the user up find it),
// /tmp (world-writable, sticky; the Deployments mount an emptyDir on it),
// and nonroot's home.
func baseFiles() []entry {
	return []entry{
		{name: "etc/", mode: 0o755, isDir: true},
		{name: "etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{name: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{name: "etc/nsswitch.conf", mode: 0o644, data: []byte("hosts: files dns\n")},
		{name: "etc/ssl/", mode: 0o755, isDir: true},
		{name: "etc/ssl/certs/", mode: 0o755, isDir: true},
		{name: "home/", mode: 0o755, isDir: true},
		{name: "home/nonroot/", mode: 0o700, uid: NonRootUID, isDir: true},
		{name: "tmp/", mode: 0o1777, isDir: true},
	}
}

// layer makes an OCI layer (gzip) of entries, every time set to created.
func layer(entries []entry, created time.Time) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.uid, ModTime: created,
			Typeflag: tar.TypeReg, Size: int64(len(e.data)), Format: tar.FormatPAX,
		}
		if e.isDir {
			h.Typeflag, h.Size = tar.TypeDir, 0
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
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// Build makes the image: the base layer, then the manager binary as
// /manager, run as 65532:65532.
func Build(o Options) (v1.Image, error) {
	ca, err := os.ReadFile(o.CABundle)
	if err != nil {
		return nil, fmt.Errorf("reading the CA bundle (--ca-bundle): %w", err)
	}
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("reading the manager binary: %w", err)
	}
	base, err := layer(append(baseFiles(), entry{name: CABundlePath[1:], mode: 0o644, data: ca}), o.Created)
	if err != nil {
		return nil, err
	}
	manager, err := layer([]entry{{name: ManagerPath[1:], mode: 0o755, data: bin}}, o.Created)
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, MediaType: types.OCILayer, History: v1.History{Created: v1.Time{Time: o.Created}, CreatedBy: "hack/image: base files (passwd, group, CA certificates, /tmp)"}},
		mutate.Addendum{Layer: manager, MediaType: types.OCILayer, History: v1.History{Created: v1.Time{Time: o.Created}, CreatedBy: "hack/image: cmd/manager, static"}},
	)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", o.Arch
	cfg.Created = v1.Time{Time: o.Created}
	cfg.Config.User = fmt.Sprintf("%d:%d", NonRootUID, NonRootUID)
	cfg.Config.Entrypoint = []string{ManagerPath}
	cfg.Config.Cmd = nil
	cfg.Config.WorkingDir = "/"
	cfg.Config.Env = []string{"PATH=/", "SSL_CERT_FILE=" + CABundlePath}
	cfg.Config.Labels = map[string]string{
		"org.opencontainers.image.title":       "apiwarden",
		"org.opencontainers.image.description": "apiwarden manager: controllers, admission webhook and authz service",
		"org.opencontainers.image.source":      "https://github.com/apiwarden/apiwarden",
		"org.opencontainers.image.url":         "https://github.com/apiwarden/apiwarden",
		"org.opencontainers.image.version":     o.Version,
		"org.opencontainers.image.created":     o.Created.Format(time.RFC3339),
	}
	if o.Revision != "" {
		cfg.Config.Labels["org.opencontainers.image.revision"] = o.Revision
	}
	return mutate.ConfigFile(img, cfg)
}

// WriteLayout writes img as the only image of a fresh OCI layout in dir,
// tagged (org.opencontainers.image.ref.name) with version.
func WriteLayout(img v1.Image, dir, version string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": version}))
}

// WriteArchive writes the OCI layout in dir as one tar file at out (skopeo's
// oci-archive transport), its entries in a fixed order and time.
func WriteArchive(dir, out string) error {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			return tw.WriteHeader(&tar.Header{Name: rel + "/", Mode: 0o755, Typeflag: tar.TypeDir, ModTime: time.Unix(0, 0)})
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: rel, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	if err != nil {
		f.Close()
		return err
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}
