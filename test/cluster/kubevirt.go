//go:build realnode

package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
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
	out := newLayoutWriter(w)
	for _, tag := range tags {
		for _, comp := range components {
			layer, err := comp.layer(b, tag)
			if err != nil {
				return err
			}
			img, err := imageOf(v1.Config{
				Entrypoint: []string{"/usr/bin/" + comp.bins[0]}, User: comp.user,
				Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			}, rootLayer, layer)
			if err != nil {
				return err
			}
			if err := out.image(img, KubeVirtRegistry+"/"+comp.name+":"+tag); err != nil {
				return fmt.Errorf("%s:%s: %w", comp.name, tag, err)
			}
		}
	}
	return out.close()
}

// WriteCrashingOperator writes an OCI image layout as a tar to w: an image
// named KubeVirtRegistry/virt-operator:tag whose virt-operator is app
// (test/cluster/app), which exits at start: a release whose operator
// crash-loops.
func WriteCrashingOperator(w io.Writer, app, tag string) error {
	return binaryImage(w, KubeVirtRegistry+"/virt-operator:"+tag, app, "usr/bin/virt-operator",
		v1.Config{Entrypoint: []string{"/usr/bin/virt-operator"}, User: "1001", Env: []string{"PATH=/usr/bin:/bin"}})
}

// layer is the component's own layer of tag.
func (c component) layer(b KubeVirtBuilds, tag string) (v1.Layer, error) {
	dir := filepath.Join(b.Components, tag)
	files := map[string]file{}
	add := func(name, src string, xattrs map[string]string) error {
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		fi, err := os.Stat(src)
		if err != nil {
			return err
		}
		files[name] = file{data: data, mode: int64(fi.Mode().Perm()), xattrs: xattrs}
		return nil
	}
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
	for name, src := range c.files {
		if err := add(name, filepath.Join(dir, src), nil); err != nil {
			return nil, err
		}
	}
	return layerTar(files)
}

// Import streams the images write produces into every node's containerd
// at once: write runs once, its output teed to one `ctr images import` per
// node.
func (c *Cluster) Import(write func(io.Writer) error) error {
	type importer struct {
		node string
		cmd  *exec.Cmd
		in   *io.PipeWriter
		out  bytes.Buffer
	}
	var (
		imps []*importer
		ins  []io.Writer
		werr error
	)
	for _, n := range c.Nodes() {
		pr, pw := io.Pipe()
		imp := &importer{node: n.name, cmd: exec.Command("ctr", "--address", n.socket(), "-n", "k8s.io", "images", "import", "-"), in: pw}
		imp.cmd.Stdin, imp.cmd.Stdout, imp.cmd.Stderr = pr, &imp.out, &imp.out
		if werr = imp.cmd.Start(); werr != nil {
			werr = fmt.Errorf("node %s: ctr images import: %w", n.name, werr)
			break
		}
		imps, ins = append(imps, imp), append(ins, pw)
	}
	if werr == nil {
		werr = write(io.MultiWriter(ins...))
	}
	var errs []error
	for _, imp := range imps { // each started one ends, told of a failed write
		imp.in.CloseWithError(werr)
		if err := imp.cmd.Wait(); err != nil && werr == nil {
			errs = append(errs, fmt.Errorf("node %s: ctr images import: %w: %s", imp.node, err, imp.out.String()))
		}
	}
	if werr != nil {
		return werr
	}
	return errors.Join(errs...)
}
