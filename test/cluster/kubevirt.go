//go:build realnode

package cluster

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// KubeVirtRegistry is where the KubeVirt images of the node are named:
// KubeVirt's own registry, so that its release manifests run unchanged
// (their pull policy is IfNotPresent and the images are present).
const KubeVirtRegistry = "quay.io/kubevirt"

// KubeVirtBuilds say where KubeVirt's components were built:
// hack/virt-operator.sh (Operators/<tag>/virt-operator) and
// hack/kubevirt.sh (Components/<tag>/…, Components/rootfs.tar).
type KubeVirtBuilds struct {
	Operators, Components string
}

// component is one KubeVirt image: its binaries (from the tag's build
// folder) in /usr/bin, extra files, its user.
type component struct {
	name  string
	bins  []string
	files map[string]string // path in the image → path in the build folder
	user  string
}

var components = []component{
	{name: "virt-operator", bins: []string{"virt-operator"}, user: "1001"},
	{name: "virt-api", bins: []string{"virt-api"}, user: "1001"},
	{name: "virt-controller", bins: []string{"virt-controller"}, user: "1001"},
	{name: "virt-handler", bins: []string{"virt-handler", "virt-chroot"}},
	{name: "virt-launcher", bins: []string{"virt-launcher", "virt-launcher-monitor", "virt-probe", "virt-tail", "virt-freezer", "container-disk", "node-labeller.sh"},
		files: map[string]string{"etc/libvirt/qemu.conf": "etc/libvirt/qemu.conf", "etc/libvirt/virtqemud.conf": "etc/libvirt/virtqemud.conf",
			"etc/libvirt/hooks/qemu": "etc/libvirt/hooks/qemu"}},
}

// capNetBindService is the security.capability value of
// `setcap cap_net_bind_service=+ep` (VFS_CAP_REVISION_2, effective,
// permitted bit 10): virt-launcher-monitor hands that capability to
// virt-launcher as an ambient one, which it must be allowed to hold.
var capNetBindService = string([]byte{1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})

// WriteKubeVirtImages writes one OCI image layout as a tar to w: every
// component of every tag as KubeVirtRegistry/<component>:<tag>, all on one
// shared root filesystem layer (Debian's libvirt and qemu) plus a layer of
// the component's binaries.
func WriteKubeVirtImages(w io.Writer, b KubeVirtBuilds, tags []string) error {
	root, err := os.ReadFile(filepath.Join(b.Components, "rootfs.tar"))
	if err != nil {
		return fmt.Errorf("the launcher's root filesystem (make kubevirt): %w", err)
	}
	rootLayer := static.NewLayer(root, types.OCIUncompressedLayer)
	out := &layoutWriter{tw: tar.NewWriter(w), written: map[v1.Hash]bool{}}
	for _, tag := range tags {
		for _, comp := range components {
			layer, err := comp.layer(b, tag)
			if err != nil {
				return err
			}
			img, err := mutate.AppendLayers(empty.Image, rootLayer, layer)
			if err != nil {
				return err
			}
			cf, err := img.ConfigFile()
			if err != nil {
				return err
			}
			cf.Architecture, cf.OS = "amd64", "linux"
			cf.Config = v1.Config{
				Entrypoint: []string{"/usr/bin/" + comp.bins[0]}, User: comp.user,
				Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			}
			if img, err = mutate.ConfigFile(img, cf); err != nil {
				return err
			}
			img = mutate.MediaType(img, types.OCIManifestSchema1)
			img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
			if err := out.image(img, KubeVirtRegistry+"/"+comp.name+":"+tag); err != nil {
				return fmt.Errorf("%s:%s: %w", comp.name, tag, err)
			}
		}
	}
	return out.close()
}

// layer is the component's own layer of tag.
func (c component) layer(b KubeVirtBuilds, tag string) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name, src string, xattrs map[string]string) error {
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		fi, err := os.Stat(src)
		if err != nil {
			return err
		}
		h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: int64(fi.Mode().Perm()), Size: int64(len(data)), ModTime: time.Unix(0, 0)}
		for k, v := range xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	}
	dir := filepath.Join(b.Components, tag)
	for _, bin := range c.bins {
		src := filepath.Join(dir, bin)
		if c.name == "virt-operator" {
			src = filepath.Join(b.Operators, tag, bin)
		}
		var xattrs map[string]string
		if bin == "virt-launcher-monitor" {
			xattrs = map[string]string{"security.capability": capNetBindService}
		}
		if err := add("usr/bin/"+bin, src, xattrs); err != nil {
			return nil, fmt.Errorf("%s %s (make kubevirt): %w", c.name, tag, err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.files)) {
		if err := add(name, filepath.Join(dir, c.files[name]), nil); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return static.NewLayer(buf.Bytes(), types.OCIUncompressedLayer), nil
}

// layoutWriter writes an OCI image layout into a tar stream, each blob
// once.
type layoutWriter struct {
	tw        *tar.Writer
	written   map[v1.Hash]bool
	manifests []any
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

func (l *layoutWriter) image(img v1.Image, name string) error {
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, layer := range layers {
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
		err = l.blob(h, size, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	for _, raw := range []func() ([]byte, error){img.RawConfigFile, img.RawManifest} {
		b, err := raw()
		if err != nil {
			return err
		}
		h, _, err := v1.SHA256(bytes.NewReader(b))
		if err != nil {
			return err
		}
		if err := l.blob(h, int64(len(b)), bytes.NewReader(b)); err != nil {
			return err
		}
	}
	m, err := img.RawManifest()
	if err != nil {
		return err
	}
	h, _, _ := v1.SHA256(bytes.NewReader(m))
	l.manifests = append(l.manifests, map[string]any{
		"mediaType": string(types.OCIManifestSchema1), "digest": h.String(), "size": len(m),
		"annotations": map[string]string{"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name},
	})
	return nil
}

func (l *layoutWriter) close() error {
	index, err := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": l.manifests})
	if err != nil {
		return err
	}
	for name, b := range map[string][]byte{"oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`), "index.json": index} {
		if err := l.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		if _, err := l.tw.Write(b); err != nil {
			return err
		}
	}
	return l.tw.Close()
}

// Import streams the images write produces into the node's containerd.
func (c *Cluster) Import(write func(io.Writer) error) error {
	cmd := exec.Command("ctr", "--address", c.socket(), "-n", "k8s.io", "images", "import", "-")
	pr, pw := io.Pipe()
	cmd.Stdin = pr
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return err
	}
	werr := write(pw)
	pw.CloseWithError(werr)
	err := cmd.Wait()
	if werr != nil {
		return werr
	}
	if err != nil {
		return fmt.Errorf("ctr images import: %w: %s", err, out.String())
	}
	return nil
}
