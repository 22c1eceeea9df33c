package podrun

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/kvgitops/kvgitops/hack/ociimage"
)

// unpackImage writes the files of the image in the OCI archive into rootfs
// with their modes and owners, as a runtime does, and returns its config.
func unpackImage(archive, dir, rootfs string) (v1.Config, error) {
	if err := ociimage.Unpack(archive, dir); err != nil {
		return v1.Config{}, err
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		return v1.Config{}, err
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return v1.Config{}, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return v1.Config{}, err
	}
	if len(m.Manifests) != 1 {
		return v1.Config{}, fmt.Errorf("%s holds %d images, want 1", archive, len(m.Manifests))
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		return v1.Config{}, fmt.Errorf("%s: %w", archive, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return v1.Config{}, err
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	if err := extract(tar.NewReader(rc), rootfs); err != nil {
		return v1.Config{}, fmt.Errorf("%s: %w", archive, err)
	}
	return cf.Config, nil
}

// extract writes a layer's directories and regular files.
func extract(tr *tar.Reader, root string) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		p := filepath.Join(root, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(p, filepath.Clean(root)+string(filepath.Separator)) {
			return fmt.Errorf("entry %q leaves the root", h.Name)
		}
		mode := os.FileMode(h.Mode).Perm()
		if h.Mode&0o1000 != 0 {
			mode |= os.ModeSticky
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("entry %q: type %c not supported", h.Name, h.Typeflag)
		}
		if err := os.Chmod(p, mode); err != nil {
			return err
		}
		if err := os.Lchown(p, h.Uid, h.Gid); err != nil {
			return err
		}
	}
}
