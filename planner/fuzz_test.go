package planner_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/planner"
	"github.com/kvgitops/kvgitops/test/tags"
)

// FuzzParseDesired: untrusted bytes never panic, and whatever is accepted
// round-trips through its canonical form.
func FuzzParseDesired(f *testing.F) {
	f.Add([]byte(header + "spec:\n  version: v1.8.4\n"))
	f.Add([]byte(header + "spec:\n  state: Absent\n  teardown: {allowWorkloadRemoval: true}\n"))
	f.Add([]byte(header + "spec:\n  version: \"~1.8\"\n  maintenanceWindow: {schedule: \"0 2 * * 6\", duration: 4h, timeZone: UTC}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := planner.ParseDesired(data)
		if err != nil {
			if fault.ReasonOf(err) != planner.ReasonInvalidDesiredState {
				t.Fatalf("rejection %v is not classified as InvalidDesiredState", err)
			}
			return
		}
		canon := d.Canonical()
		d2, err := planner.ParseDesired(canon)
		if err != nil {
			t.Fatalf("canonical form of an accepted file is rejected: %v\n%s", err, canon)
		}
		if again := d2.Canonical(); !bytes.Equal(canon, again) {
			t.Fatalf("round trip changed the file:\n%s\n---\n%s", canon, again)
		}
	})
}

// FuzzCatalog: both catalog formats never panic; an accepted catalog is
// sorted, valid, and keeps its digest when re-rendered as text.
func FuzzCatalog(f *testing.F) {
	f.Add(tags.Text)
	f.Add([]byte(`[{"tag_name":"v1.0.0","assets":[{"name":"kubevirt-operator.yaml"}]},{"tag_name":"v1.1.0-rc.0","prerelease":true,"assets":[{"name":"kubevirt-operator.yaml"}]}]`))
	f.Add([]byte("v1.0.0\n# comment\nv1.0.1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := planner.ParseCatalog(data)
		if err != nil {
			return
		}
		var text strings.Builder
		rs := c.Releases()
		for i, r := range rs {
			if !planner.ValidTag(r.Tag) {
				t.Fatalf("accepted invalid tag %q", r.Tag)
			}
			if i > 0 && rs[i-1].Tag == r.Tag {
				t.Fatalf("duplicate tag %q", r.Tag)
			}
			if r.Prerelease && !strings.Contains(r.Tag, "-") {
				return // a flag-only pre-release does not survive the text format
			}
			text.WriteString(r.Tag + "\n")
		}
		c2, err := planner.ParseCatalogText([]byte(text.String()))
		if err != nil || c2.Digest() != c.Digest() {
			t.Fatalf("re-rendered catalog: %v, digest %s vs %s", err, c2.Digest(), c.Digest())
		}
	})
}

// FuzzCompute checks the planner's invariants over the real catalog: every
// hop goes up, stays in its line or moves to the next one, the last hop is
// the target, nothing below v0.17 is a source, and Strict's hops include
// LatestPatch's.
func FuzzCompute(f *testing.F) {
	cat := realCatalog(f)
	tags := tags.Tags()
	f.Add(uint16(2), uint16(255), false)
	f.Add(uint16(13), uint16(23), true)
	f.Add(uint16(170), uint16(180), false)
	f.Fuzz(func(t *testing.T, from, to uint16, imageTag bool) {
		src, dst := tags[int(from)%len(tags)], tags[int(to)%len(tags)]
		o := planner.Observed{Installed: src, Mode: planner.ModeLocked, OperatorVersion: src, KubeVirt: true, OperatorPresent: true}
		if imageTag {
			o.Mode = planner.ModeImageTag
		}
		strict, errS := planner.Compute(mustDesired(t, "  version: "+dst), o, cat)
		latest, errL := planner.Compute(mustDesired(t, "  version: "+dst+"\n  pathPolicy: LatestPatch"), o, cat)
		if (errS == nil) != (errL == nil) {
			t.Fatalf("%s -> %s: Strict err %v, LatestPatch err %v", src, dst, errS, errL)
		}
		if errS != nil {
			if fault.ReasonOf(errS) == "" {
				t.Fatalf("%s -> %s: unclassified error %v", src, dst, errS)
			}
			return
		}
		for _, p := range []planner.Plan{strict, latest} {
			checkHops(t, p, src, dst)
		}
		inStrict := map[string]bool{}
		for _, h := range hopsOf(strict) {
			inStrict[h] = true
		}
		for _, h := range hopsOf(latest) {
			if !inStrict[h] {
				t.Fatalf("%s -> %s: LatestPatch hop %s is not a Strict hop %v", src, dst, h, hopsOf(strict))
			}
		}
	})
}

func checkHops(t *testing.T, p planner.Plan, src, dst string) {
	t.Helper()
	if len(p.Steps) == 0 {
		if p.Action != planner.ActionNone || src != dst {
			t.Fatalf("%s -> %s: no steps but action %s", src, dst, p.Action)
		}
		return
	}
	if last := p.Steps[len(p.Steps)-1].To; last != dst {
		t.Fatalf("%s -> %s: last hop ends at %s", src, dst, last)
	}
	for i, s := range p.Steps {
		from, to := mustLine(t, s.From), mustLine(t, s.To)
		if cmpTags(s.From, s.To) >= 0 {
			t.Fatalf("%s -> %s: hop %d %s does not go up", src, dst, i, s)
		}
		if from[0] == 0 && from[1] < 17 {
			t.Fatalf("%s -> %s: hop %d starts below v0.17", src, dst, i)
		}
		sameLine := from == to
		nextMinor := to[0] == from[0] && to[1] == from[1]+1
		nextMajor := to[0] == from[0]+1 && to[1] == 0
		if !sameLine && !nextMinor && !nextMajor {
			t.Fatalf("%s -> %s: hop %d %s skips a minor", src, dst, i, s)
		}
		if i < len(p.Steps)-1 && strings.Contains(s.To, "-") {
			t.Fatalf("%s -> %s: pre-release %s is an intermediate hop", src, dst, s.To)
		}
	}
}
