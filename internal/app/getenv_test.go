package app

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// envReaders are the calls that read the process environment.
var envReaders = map[string]bool{"Getenv": true, "LookupEnv": true, "Environ": true}

// envAllowed are the non-test Go files outside internal/app and handler/ that may read the process
// environment, each with the reason. Everything else gets its settings from internal/app.
var envAllowed = map[string]string{
	// The Functions host emulator starts handler processes the way the host does: with the parent's
	// environment plus the app settings and FUNCTIONS_* variables of the instance.
	"internal/funcemu/instance.go": "test double: passes the parent environment to the handler processes it starts",
	// A stand-in custom handler (its own main program) used by funcemu's tests: it must read the port
	// the host hands to every custom handler.
	"internal/funcemu/testdata/echohandler/main.go": "test double: a separate handler process reads FUNCTIONS_CUSTOMHANDLER_PORT",
	// The test helper that starts Azurite (a child process) decides whether a missing install skips
	// the test or, in CI, fails it.
	"internal/azurite/azuritetest/azuritetest.go": "test double: CI set makes a missing Azurite a failure instead of a skip",
}

// TestOnlyAppReadsTheEnvironment walks the module's non-test Go files and fails on an os.Getenv,
// os.LookupEnv or os.Environ call outside internal/app, handler/ and the test doubles above.
func TestOnlyAppReadsTheEnvironment(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	checked := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := filepath.ToSlash(strings.TrimPrefix(path, root+string(filepath.Separator)))
		if d.IsDir() {
			switch d.Name() {
			case ".git", "node_modules", "bin", "dist":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		checked++
		if strings.HasPrefix(rel, "internal/app/") || strings.HasPrefix(rel, "handler/") {
			return nil
		}
		calls, err := envCalls(path)
		if err != nil {
			return err
		}
		if _, ok := envAllowed[rel]; ok {
			seen[rel] = len(calls) > 0
			return nil
		}
		for _, c := range calls {
			t.Errorf("%s:%s reads the environment; settings are read in internal/app and passed in", rel, c)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("walked only %d Go files under %s; the walk is broken", checked, root)
	}
	for rel, reason := range envAllowed {
		if !seen[rel] {
			t.Errorf("%s is allowed to read the environment (%s) but no longer does (or is gone): drop it from envAllowed", rel, reason)
		}
	}
}

// envCalls lists line:call of every environment read in one file, whatever name "os" is imported as.
func envCalls(path string) ([]string, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == "os" || p == "syscall" {
			name := filepath.Base(p)
			if imp.Name != nil {
				name = imp.Name.Name
			}
			names[name] = true
		}
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok || !envReaders[sel.Sel.Name] {
			return true
		}
		if id, ok := sel.X.(*ast.Ident); ok && names[id.Name] {
			out = append(out, strconv.Itoa(fset.Position(sel.Pos()).Line)+": "+id.Name+"."+sel.Sel.Name)
		}
		return true
	})
	return out, nil
}

// TestEnvCallsSeesAliasesAndValues keeps the walk honest: an aliased import and a function value
// (passing os.Getenv as a getenv) count as reads.
func TestEnvCallsSeesAliasesAndValues(t *testing.T) {
	dir := t.TempDir()
	src := "package x\n\nimport sys \"os\"\n\nvar get = sys.Getenv\n\nfunc f() { _, _ = sys.LookupEnv(\"A\"); _ = sys.Environ() }\n"
	path := filepath.Join(dir, "x.go")
	if err := writeFile(path, src); err != nil {
		t.Fatal(err)
	}
	calls, err := envCalls(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 3 {
		t.Fatalf("envCalls = %v, want the three reads", calls)
	}
}
