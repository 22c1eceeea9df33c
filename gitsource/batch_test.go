package gitsource_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/kvgitops/kvgitops/fault"
	"github.com/kvgitops/kvgitops/gitsource"
	"github.com/kvgitops/kvgitops/test/gitserver"
)

// statusKey is a cluster's SSH status-signing key and its public half.
func statusKey(t *testing.T) (*gitsource.CommitSigner, string) {
	t.Helper()
	signer, pub, err := gitserver.StatusKey()
	if err != nil {
		t.Fatal(err)
	}
	return signer, pub
}

// TestPeersInOneRoundTrip: five clusters' signed status branches are
// listed with one ls-refs and read with one fetch; each file comes back
// with its own verdict (one signed by another key, one branch without its
// file); a second pass over heads that did not move fetches nothing.
func TestPeersInOneRoundTrip(t *testing.T) {
	s := server(t, gitserver.Options{})
	commit(t, user(t, s), "kubevirt.yaml", "desired\n")
	keys := map[string]string{}
	for i := range 5 {
		c := fmt.Sprintf("c%d", i)
		signer, pub := statusKey(t)
		keys[c] = pub
		path := "status/" + c + ".yaml"
		if i == 4 {
			path = "status/elsewhere.yaml" // its branch lacks its file
		}
		w := source(t, s, nil, func(cfg *gitsource.Config) { cfg.StatusBranch, cfg.Signer = "status/"+c, signer })
		if _, err := w.WriteFile(context.Background(), path, []byte("cluster: "+c+"\n"), "status("+c+")"); err != nil {
			t.Fatal(err)
		}
	}
	_, keys["c3"] = statusKey(t) // c3 signed with a key the reader does not trust
	reader := source(t, s, nil)
	read := func() []gitsource.SignedRead {
		heads, err := reader.Heads(context.Background(), "status/")
		if err != nil || len(heads) != 5 {
			t.Fatalf("heads %v: %v", heads, err)
		}
		var files []gitsource.SignedFile
		for i := range 5 {
			c := fmt.Sprintf("c%d", i)
			v, err := gitsource.TrustedKeys(keys[c])
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, gitsource.SignedFile{Rev: heads["status/"+c], Path: "status/" + c + ".yaml", Keys: v})
		}
		got, err := reader.ReadSignedMany(context.Background(), files, 64<<10)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	lsRefs, fetches := s.LsRefs(), s.Fetches()
	got := read()
	if n, f := s.LsRefs()-lsRefs, s.Fetches()-fetches; n != 1 || f != 1 {
		t.Errorf("first pass: %d ls-refs, %d fetches; want 1 and 1", n, f)
	}
	for i, r := range got {
		switch c := fmt.Sprintf("c%d", i); {
		case i == 3:
			if fault.ReasonOf(r.Err) != gitsource.ReasonSignatureInvalid {
				t.Errorf("%s signed by an untrusted key: %v", c, r.Err)
			}
		case i == 4:
			if fault.ReasonOf(r.Err) != gitsource.ReasonDesiredFileMissing {
				t.Errorf("%s without its file: %v", c, r.Err)
			}
		case r.Err != nil || string(r.Data) != "cluster: "+c+"\n" || !strings.HasPrefix(r.Signer, "ssh:"):
			t.Errorf("%s: %q by %q, %v", c, r.Data, r.Signer, r.Err)
		}
	}
	// Asked for two branches, it lists those two only.
	if heads, err := reader.Heads(context.Background(), "status/c1", "status/c2"); err != nil || len(heads) != 2 || heads["status/c1"] == "" || heads["status/c2"] == "" {
		t.Errorf("two branches asked for: %v, %v", heads, err)
	}
	lsRefs, fetches = s.LsRefs(), s.Fetches()
	read()
	if n, f := s.LsRefs()-lsRefs, s.Fetches()-fetches; n != 1 || f != 0 {
		t.Errorf("second pass, no head moved: %d ls-refs, %d fetches; want 1 and 0", n, f)
	}
}
