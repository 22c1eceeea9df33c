package rules

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kvgitops/kvgitops/test/root"
)

const module = "github.com/kvgitops/kvgitops/"

// floors say which way imports point: a package imports only packages of
// lower floors (never its own floor, never up). mustNot are the import
// prefixes its doc.go rules out.
var floors = []struct {
	pkg     string
	floor   int
	mustNot []string
}{
	{"redact", 0, []string{module}},
	{"fault", 1, nil},
	{"planner", 2, []string{"context", "log", "log/slog", "net", "net/http", "os", "os/exec", "k8s.io/", "sigs.k8s.io/controller-runtime", "github.com/go-git/", "github.com/prometheus/"}},
	{"gitsource", 3, []string{"k8s.io/", "log", "log/slog", "github.com/prometheus/"}},
	{"release", 3, []string{"k8s.io/client-go", "github.com/go-git/", "log", "log/slog", "os/exec"}},
	{"executor", 4, []string{"github.com/go-git/", "github.com/prometheus/"}},
	{"mirror", 4, []string{"k8s.io/client-go", "github.com/go-git/", "log", "log/slog", "os/exec"}},
	{"agent", 5, []string{"k8s.io/client-go", "k8s.io/apimachinery", "k8s.io/api/", "github.com/go-git/"}},
	{"cmd/kvgitops", 6, nil},
}

type listed struct {
	ImportPath string
	Imports    []string
	GoFiles    []string
	Dir        string
}

func list(t *testing.T) map[string]listed {
	t.Helper()
	dir, err := root.Module()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]listed{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p listed
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs[strings.TrimPrefix(p.ImportPath, module)] = p
	}
	return pkgs
}

// TestImportsPointDown: every product package imports only packages of
// lower floors, nothing its doc.go rules out, and never the test ground;
// and its doc.go says what it must not do.
func TestImportsPointDown(t *testing.T) {
	pkgs := list(t)
	floorOf := map[string]int{}
	for _, f := range floors {
		floorOf[f.pkg] = f.floor
	}
	for _, f := range floors {
		p, ok := pkgs[f.pkg]
		if !ok {
			t.Errorf("package %s is gone: update the floors", f.pkg)
			continue
		}
		for _, imp := range p.Imports {
			own := strings.TrimPrefix(imp, module)
			switch fl, ours := floorOf[own]; {
			case strings.HasPrefix(own, "test/"):
				t.Errorf("%s imports the test ground (%s)", f.pkg, imp)
			case ours && fl >= f.floor:
				t.Errorf("%s (floor %d) imports %s (floor %d): imports point down only", f.pkg, f.floor, own, fl)
			case !ours && strings.HasPrefix(imp, module):
				t.Errorf("%s imports %s, which has no floor: add it to the floors", f.pkg, imp)
			}
			for _, no := range f.mustNot {
				if imp == no || strings.HasSuffix(no, "/") && strings.HasPrefix(imp, no) {
					t.Errorf("%s must not import %s (its doc.go says so), but imports %s", f.pkg, no, imp)
				}
			}
		}
		doc, err := os.ReadFile(filepath.Join(p.Dir, "doc.go"))
		if err != nil || !strings.Contains(string(doc), "must not") {
			t.Errorf("%s/doc.go does not say what the package must not do", f.pkg)
		}
	}
	for name := range pkgs {
		if !strings.HasPrefix(name, "test/") && !strings.HasPrefix(name, "hack/") && !slices.ContainsFunc(floors, func(f struct {
			pkg     string
			floor   int
			mustNot []string
		}) bool {
			return f.pkg == name
		}) {
			t.Errorf("package %s has no floor: add it to the floors", name)
		}
	}
}

// TestThePlannerReadsNoClock: the planner is pure; the caller passes now.
func TestThePlannerReadsNoClock(t *testing.T) {
	p := list(t)["planner"]
	for _, f := range p.GoFiles {
		data, err := os.ReadFile(filepath.Join(p.Dir, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, call := range []string{"time.Now(", "time.Since(", "time.Until(", "rand."} {
			if strings.Contains(string(data), call) {
				t.Errorf("planner/%s calls %s", f, call)
			}
		}
	}
}

// docsRef is a path into this repository's docs/ (not a URL's path).
var docsRef = regexp.MustCompile(`(?:^|[^/A-Za-z0-9_.-])(docs/[A-Za-z0-9_./-]+\.md)`)

// TestEveryDocsFileNamedExists: a comment, a message or a page that points
// at docs/… points at a file that is there.
func TestEveryDocsFileNamedExists(t *testing.T) {
	dir, err := root.Module()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("git", "ls-files", "*.go", "*.md", "*.yaml", "Makefile", "hack/*.sh")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	checked := 0
	for sc.Scan() {
		data, err := os.ReadFile(filepath.Join(dir, sc.Text()))
		if err != nil {
			continue // deleted in the work tree
		}
		for _, m := range docsRef.FindAllStringSubmatch(string(data), -1) {
			checked++
			if _, err := os.Stat(filepath.Join(dir, m[1])); err != nil {
				t.Errorf("%s names %s, which does not exist", sc.Text(), m[1])
			}
		}
	}
	if checked == 0 {
		t.Error("no reference to docs/ found: the scan is broken")
	}
}
