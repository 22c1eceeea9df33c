package kustomize

import (
	"fmt"
	"os"
	"path/filepath"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/kvgitops/kvgitops/test/root"
)

// Kustomization is what the tests read of deploy/kustomization.yaml.
type Kustomization struct {
	Resources []string `json:"resources"`
	Images    []struct {
		Name   string `json:"name"`
		NewTag string `json:"newTag"`
	} `json:"images"`
}

// Image is the image the base pins.
func (k Kustomization) Image() string { return k.Images[0].Name + ":" + k.Images[0].NewTag }

// deployDir is deploy/ in the module.
func deployDir() (string, error) {
	dir, err := root.Module()
	return filepath.Join(dir, "deploy"), err
}

// Read reads deploy/kustomization.yaml.
func Read() (Kustomization, error) {
	dir, err := deployDir()
	if err != nil {
		return Kustomization{}, err
	}
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return Kustomization{}, err
	}
	var k Kustomization
	if err := yaml.Unmarshal(data, &k); err != nil || len(k.Images) != 1 || len(k.Resources) == 0 {
		return k, fmt.Errorf("deploy/kustomization.yaml: %v (%d images, %d resources)", err, len(k.Images), len(k.Resources))
	}
	return k, nil
}

// Components are the names of deploy/components/*.
func Components() ([]string, error) {
	dir, err := deployDir()
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(filepath.Join(dir, "components"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// Render is what kustomize renders of an overlay of deploy/ that patches
// config into the ConfigMap and uses components.
func Render(config map[string]string, components ...string) ([]byte, error) {
	dir, err := deployDir()
	if err != nil {
		return nil, err
	}
	k, err := Read()
	if err != nil {
		return nil, err
	}
	fs := filesys.MakeFsInMemory()
	files := append([]string{"kustomization.yaml"}, k.Resources...)
	for _, c := range components {
		entries, err := os.ReadDir(filepath.Join(dir, "components", c))
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			files = append(files, "components/"+c+"/"+e.Name())
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return nil, err
		}
		if err := fs.WriteFile("/deploy/"+f, data); err != nil {
			return nil, err
		}
	}
	patch, err := yaml.Marshal(map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "kvgitops-config", "namespace": "kvgitops"}, "data": config})
	if err != nil {
		return nil, err
	}
	var comps []string
	for _, c := range components {
		comps = append(comps, "../deploy/components/"+c)
	}
	overlay, err := yaml.Marshal(map[string]any{"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
		"resources": []string{"../deploy"}, "components": comps, "patches": []any{map[string]any{"path": "config.yaml"}}})
	if err != nil {
		return nil, err
	}
	if err := fs.WriteFile("/overlay/kustomization.yaml", overlay); err != nil {
		return nil, err
	}
	if err := fs.WriteFile("/overlay/config.yaml", patch); err != nil {
		return nil, err
	}
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fs, "/overlay")
	if err != nil {
		return nil, fmt.Errorf("kustomize build of deploy/: %w", err)
	}
	return res.AsYaml()
}
