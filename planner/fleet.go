package planner

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// The fleet file's identity.
const FleetKind = "KubeVirtFleet"

// Bounds of the fleet file.
const (
	DefaultStatusMissingAfter = time.Hour
	maxSoak                   = 90 * 24 * time.Hour
	maxRings                  = 20
	maxFleetClusters          = 2000
)

// MaxFleetSize caps the fleet file: room for maxFleetClusters clusters,
// each with its name in a ring and an SSH status key (≈ 110 bytes), twice
// over. Larger files are rejected unread.
const MaxFleetSize = 512 << 10

// Fleet is a validated fleet file (the README, "Fleets"): one desired
// KubeVirt state for many clusters, rolled out ring by ring. Build it with
// [ParseFleet].
type Fleet struct {
	// KubeVirt is spec.kubevirt: the desired file's spec, for every cluster.
	KubeVirt Desired
	Rings    []Ring
	// StatusMissingAfter: a cluster of an earlier ring without a status
	// file for this long halts the later rings.
	StatusMissingAfter time.Duration
	Overrides          map[string]Override
	// StatusKeys are the public keys each cluster signs its status commits
	// with (spec.statusKeys): a peer's status counts for the ring gate only
	// when its branch head is signed by its key.
	StatusKeys map[string]string
	// Paused (spec.paused) holds every cluster whose hop has not started:
	// the whole rollout waits until it is false again.
	Paused bool
	// Promotions (spec.promotions) are the manual promotions of rings
	// with promotion Manual: ring name → the version it may go to.
	Promotions map[string]string
}

// Ring is one step of a rollout: its clusters start only when every
// cluster of every earlier ring has run the fleet's version for the
// earlier rings' soak.
type Ring struct {
	Name     string
	Clusters []string
	Soak     time.Duration
	// MaxParallel is how many of the ring's clusters may move at once (0:
	// all), or with MaxParallelPercent set that share of them, rounded up.
	MaxParallel        int
	MaxParallelPercent int
	// Promotion Manual: the ring starts only once spec.promotions names
	// it with the version (a commit to the fleet file, signed where
	// verification is on).
	Promotion Promotion
	// MaxFailures is the ring's failure budget: later rings halt once more
	// than this many of its clusters are Failed or Refused (default 0: the
	// first halts them).
	MaxFailures int
}

// Promotion says how a ring starts once the rings before it are done.
type Promotion string

const (
	PromotionAutomatic Promotion = "Automatic"
	PromotionManual    Promotion = "Manual"
)

// Override holds one cluster back: pinned to its own version, or suspended.
// An overridden cluster does not gate the rings after its own.
type Override struct {
	Version string
	Suspend bool
}

// Membership is where a cluster stands in a fleet.
type Membership struct {
	Ring     int // index into Fleet.Rings
	Override *Override
}

var fleetName = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)

// ParseFleet validates and decodes a fleet file, with the same strictness
// as ParseDesired; spec.kubevirt is a desired file's spec.
func ParseFleet(data []byte) (Fleet, error) {
	root, err := decodeSingleDocument(data, MaxFleetSize)
	if err != nil {
		return Fleet{}, err
	}
	f := Fleet{StatusMissingAfter: DefaultStatusMissingAfter, KubeVirt: defaultDesired()}
	var spec *yaml.Node
	top := fields{
		"apiVersion": func(n *yaml.Node) error { return expectConst(n, "apiVersion", DesiredAPIVersion) },
		"kind":       func(n *yaml.Node) error { return expectConst(n, "kind", FleetKind) },
		"spec":       func(n *yaml.Node) error { spec = n; return nil },
	}
	if err := top.decode("", root, "apiVersion", "kind", "spec"); err != nil {
		return Fleet{}, err
	}
	var overrides, keys, promotions *yaml.Node
	sf := fields{
		"kubevirt": func(n *yaml.Node) error {
			return rebase(f.KubeVirt.decodeSpec(n), "spec.", "spec.kubevirt.")
		},
		"rings": f.decodeRings,
		"halt": func(n *yaml.Node) error {
			h := fields{"statusMissingAfter": func(v *yaml.Node) error {
				return duration(v, "spec.halt.statusMissingAfter", maxSoak, &f.StatusMissingAfter)
			}}
			return h.decode("spec.halt", n)
		},
		"overrides":  func(n *yaml.Node) error { overrides = n; return nil },
		"statusKeys": func(n *yaml.Node) error { keys = n; return nil },
		"paused":     func(n *yaml.Node) error { return scalarBool(n, "spec.paused", &f.Paused) },
		"promotions": func(n *yaml.Node) error { promotions = n; return nil },
	}
	if err := sf.decode("spec", spec, "kubevirt", "rings"); err != nil {
		return Fleet{}, err
	}
	if overrides != nil { // after the rings, which they must name
		if err := f.decodeOverrides(overrides); err != nil {
			return Fleet{}, err
		}
	}
	if keys != nil {
		if err := f.decodeKeys(keys); err != nil {
			return Fleet{}, err
		}
	}
	if promotions != nil {
		if err := f.decodePromotions(promotions); err != nil {
			return Fleet{}, err
		}
	}
	return f, nil
}

// maxStatusKey bounds one public key (an armored OpenPGP key with a few
// subkeys fits; an SSH key is a line).
const maxStatusKey = 16 << 10

// decodeKeys reads spec.statusKeys: cluster name → an SSH public key
// (authorized_keys line) or an armored OpenPGP public key. Only the shape is
// checked here; the signature check parses it.
func (f *Fleet) decodeKeys(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return &FieldError{Field: "spec.statusKeys", Line: n.Line, Problem: "must be a mapping of cluster name to public key, got " + kindName(n)}
	}
	f.StatusKeys = map[string]string{}
	dec := fields{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		cluster, field := k.Value, "spec.statusKeys."+k.Value
		dec[cluster] = func(v *yaml.Node) error {
			if _, _, ok := f.find(cluster); !ok {
				return fieldErr(k, "spec.statusKeys", cluster, "names a cluster that is in no ring")
			}
			key, err := scalarString(v, field)
			if err != nil {
				return err
			}
			key = strings.TrimSpace(key)
			switch {
			case len(key) > maxStatusKey:
				return &FieldError{Field: field, Line: v.Line, Problem: fmt.Sprintf("is %d bytes, at most %d", len(key), maxStatusKey)}
			case !statusKeyShape.MatchString(key) && !strings.HasPrefix(key, "-----BEGIN PGP PUBLIC KEY BLOCK-----"):
				return fieldErr(v, field, key, "is neither an SSH public key (ssh-ed25519 AAAA…) nor an armored OpenPGP public key")
			}
			f.StatusKeys[cluster] = key
			return nil
		}
	}
	return dec.decode("spec.statusKeys", n)
}

var statusKeyShape = regexp.MustCompile(`^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) [A-Za-z0-9+/]+=*( [^\x00-\x1f]*)?$`)

func (f *Fleet) decodeRings(n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		return &FieldError{Field: "spec.rings", Line: n.Line, Problem: "must be a non-empty list of rings, got " + kindName(n)}
	}
	if len(n.Content) > maxRings {
		return &FieldError{Field: "spec.rings", Line: n.Line, Problem: fmt.Sprintf("has %d rings, at most %d are allowed", len(n.Content), maxRings)}
	}
	ringOf := map[string]string{}
	for i, rn := range n.Content {
		path := fmt.Sprintf("spec.rings[%d]", i)
		var r Ring
		var clusters *yaml.Node
		rf := fields{
			"name": func(v *yaml.Node) error { return name(v, path+".name", &r.Name) },
			"clusters": func(v *yaml.Node) error {
				clusters = v
				return nil
			},
			"soak":        func(v *yaml.Node) error { return duration(v, path+".soak", maxSoak, &r.Soak) },
			"maxParallel": func(v *yaml.Node) error { return r.decodeMaxParallel(v, path+".maxParallel") },
			"promotion": func(v *yaml.Node) error {
				return enum(v, path+".promotion", &r.Promotion, PromotionAutomatic, PromotionManual)
			},
			"maxFailures": func(v *yaml.Node) error { return count(v, path+".maxFailures", maxFleetClusters, &r.MaxFailures) },
		}
		r.Promotion = PromotionAutomatic
		if err := rf.decode(path, rn, "name", "clusters"); err != nil {
			return err
		}
		for _, o := range f.Rings {
			if o.Name == r.Name {
				return fieldErr(rn, path+".name", r.Name, "names another ring too")
			}
		}
		if clusters.Kind != yaml.SequenceNode || len(clusters.Content) == 0 {
			return &FieldError{Field: path + ".clusters", Line: clusters.Line, Problem: "must be a non-empty list of cluster names, got " + kindName(clusters)}
		}
		for j, cn := range clusters.Content {
			var c string
			if err := name(cn, fmt.Sprintf("%s.clusters[%d]", path, j), &c); err != nil {
				return err
			}
			if other, ok := ringOf[c]; ok {
				return fieldErr(cn, fmt.Sprintf("%s.clusters[%d]", path, j), c, "is already in ring "+other+": a cluster is in one ring")
			}
			ringOf[c] = r.Name
			r.Clusters = append(r.Clusters, c)
		}
		if len(ringOf) > maxFleetClusters {
			return &FieldError{Field: path + ".clusters", Line: clusters.Line, Problem: fmt.Sprintf("the fleet has more than %d clusters", maxFleetClusters)}
		}
		f.Rings = append(f.Rings, r)
	}
	return nil
}

func (f *Fleet) decodeOverrides(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return &FieldError{Field: "spec.overrides", Line: n.Line, Problem: "must be a mapping of cluster name to override, got " + kindName(n)}
	}
	f.Overrides = map[string]Override{}
	dec := fields{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		cluster := k.Value
		path := "spec.overrides." + cluster
		dec[cluster] = func(v *yaml.Node) error {
			if _, _, ok := f.find(cluster); !ok {
				return fieldErr(k, "spec.overrides", cluster, "names a cluster that is in no ring")
			}
			var o Override
			var version *yaml.Node
			of := fields{
				"version": func(x *yaml.Node) error {
					version = x
					return scalarStringInto(x, path+".version", &o.Version)
				},
				"suspend": func(x *yaml.Node) error { return scalarBool(x, path+".suspend", &o.Suspend) },
			}
			if err := of.decode(path, v); err != nil {
				return err
			}
			if version != nil {
				if f.KubeVirt.State == StateAbsent {
					return fieldErr(version, path+".version", o.Version, "cannot pin a version while spec.kubevirt.state is Absent")
				}
				if _, err := parseSelector(o.Version); err != nil {
					return fieldErr(version, path+".version", o.Version, err.Error())
				}
			}
			if version == nil && !o.Suspend {
				return &FieldError{Field: path, Line: v.Line, Problem: "sets nothing: give version or suspend: true"}
			}
			f.Overrides[cluster] = o
			return nil
		}
	}
	return dec.decode("spec.overrides", n)
}

// find returns the ring of a cluster.
func (f *Fleet) find(cluster string) (int, Ring, bool) {
	for i, r := range f.Rings {
		for _, c := range r.Clusters {
			if c == cluster {
				return i, r, true
			}
		}
	}
	return 0, Ring{}, false
}

// DesiredFor is the desired state of one cluster: the fleet's, with the
// cluster's override applied. A cluster in no ring is refused with
// ReasonNotInFleet.
func (f *Fleet) DesiredFor(cluster string) (Desired, Membership, error) {
	i, _, ok := f.find(cluster)
	if !ok {
		names := make([]string, len(f.Rings))
		for j, r := range f.Rings {
			names[j] = r.Name
		}
		return Desired{}, Membership{}, refuse(ReasonNotInFleet, "cluster %q is in no ring of the fleet file (rings: %s); it acts only once a ring names it",
			cluster, strings.Join(names, ", "))
	}
	d, m := f.KubeVirt, Membership{Ring: i}
	if o, ok := f.Overrides[cluster]; ok {
		m.Override = &o
		if o.Version != "" {
			d.Version = o.Version
			d.selector, _ = parseSelector(o.Version) // checked by ParseFleet
		}
		d.Suspend = d.Suspend || o.Suspend
	}
	return d, m, nil
}

// rebase renames the fields of a FieldError found in a nested spec.
func rebase(err error, from, to string) error {
	var fe *FieldError
	if !errors.As(err, &fe) {
		return err
	}
	c := *fe
	switch {
	case strings.HasPrefix(fe.Field, from):
		c.Field = to + strings.TrimPrefix(fe.Field, from)
	case fe.Field+"." == from:
		c.Field = strings.TrimSuffix(to, ".")
	}
	return &c
}

func name(n *yaml.Node, field string, out *string) error {
	if err := scalarStringInto(n, field, out); err != nil {
		return err
	}
	if !fleetName.MatchString(*out) {
		return fieldErr(n, field, *out, "not a name (lower-case letters, digits, '-' and '.', at most 63)")
	}
	return nil
}

func scalarStringInto(n *yaml.Node, field string, out *string) error {
	s, err := scalarString(n, field)
	*out = s
	return err
}
