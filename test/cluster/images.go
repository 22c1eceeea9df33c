//go:build realnode

package cluster

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"os"
	"path"
	"slices"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ociArchive writes an OCI image layout as a tar: one layer holding binary
// as /app, entrypoint /app with args, named name (the annotation ctr
// imports it by).
func ociArchive(out, name, binary string, args []string) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := binaryImage(f, name, binary, "app", v1.Config{Entrypoint: []string{"/app"}, Cmd: args, User: "65534:65534"}); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// binaryImage writes an OCI image layout as a tar to w: one image named
// name, its one layer holding binary at path, with config.
func binaryImage(w io.Writer, name, binary, path string, config v1.Config) error {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	layer, err := layerTar(map[string]file{path: {data: bin, mode: 0o755}})
	if err != nil {
		return err
	}
	img, err := imageOf(config, layer)
	if err != nil {
		return err
	}
	out := newLayoutWriter(w)
	if err := out.image(img, name); err != nil {
		return err
	}
	return out.close()
}

// file is one regular file of a layer.
type file struct {
	data   []byte
	mode   int64
	xattrs map[string]string // e.g. security.capability
}

// layerTar is an uncompressed layer of files (directories implied), in a
// stable order.
func layerTar(files map[string]file) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		var parents []string
		for d := path.Dir(name); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			parents = append(parents, d)
		}
		for _, d := range slices.Backward(parents) {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: time.Unix(0, 0)}); err != nil {
				return nil, err
			}
		}
		f := files[name]
		h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: f.mode, Size: int64(len(f.data)), ModTime: time.Unix(0, 0)}
		for k, v := range f.xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return static.NewLayer(buf.Bytes(), types.OCIUncompressedLayer), nil
}

// imageOf is a linux/amd64 OCI image of layers with config.
func imageOf(config v1.Config, layers ...v1.Layer) (v1.Image, error) {
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf.Architecture, cf.OS, cf.Config = "amd64", "linux", config
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, err
	}
	return mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON), nil
}

// layoutWriter writes an OCI image layout into a tar stream, each blob
// once: what `ctr images import` reads.
type layoutWriter struct {
	tw        *tar.Writer
	written   map[v1.Hash]bool
	manifests []any
}

func newLayoutWriter(w io.Writer) *layoutWriter {
	return &layoutWriter{tw: tar.NewWriter(w), written: map[v1.Hash]bool{}}
}

func (l *layoutWriter) blob(h v1.Hash, size int64, r io.Reader) error {
	if l.written[h] {
		return nil
	}
	l.written[h] = true
	if err := l.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "blobs/" + h.Algorithm + "/" + h.Hex, Mode: 0o644, Size: size, ModTime: time.Unix(0, 0)}); err != nil {
		return err
	}
	_, err := io.Copy(l.tw, r)
	return err
}

// image adds img, named name (the annotation ctr imports it by).
func (l *layoutWriter) image(img v1.Image, name string) error {
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, layer := range layers {
		if err := l.layer(layer); err != nil {
			return err
		}
	}
	var manifest []byte
	for _, raw := range []func() ([]byte, error){img.RawConfigFile, img.RawManifest} {
		if manifest, err = raw(); err != nil {
			return err
		}
		h, _, err := v1.SHA256(bytes.NewReader(manifest))
		if err != nil {
			return err
		}
		if err := l.blob(h, int64(len(manifest)), bytes.NewReader(manifest)); err != nil {
			return err
		}
	}
	h, _, _ := v1.SHA256(bytes.NewReader(manifest)) // the last blob written: the manifest
	l.manifests = append(l.manifests, map[string]any{
		"mediaType": string(types.OCIManifestSchema1), "digest": h.String(), "size": len(manifest),
		"annotations": map[string]string{"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name},
	})
	return nil
}

func (l *layoutWriter) layer(layer v1.Layer) error {
	h, err := layer.Digest()
	if err != nil {
		return err
	}
	size, err := layer.Size()
	if err != nil {
		return err
	}
	rc, err := layer.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	return l.blob(h, size, rc)
}

func (l *layoutWriter) close() error {
	index, err := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": l.manifests})
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)}, {"index.json", index}} {
		if err := l.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		if _, err := l.tw.Write(f.data); err != nil {
			return err
		}
	}
	return l.tw.Close()
}
