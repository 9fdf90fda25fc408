package deploy

import (
	"archive/zip"
	"debug/elf"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"dvbulk/internal/job"
)

// TestPackage runs `make package` into a temporary folder and checks the archive Flex Consumption's
// one deploy (and zip deploy) expects: exactly host.json at the root, the two function.json files,
// the linux/amd64 binary with its execute bit at the path host.json names, and the job specs of
// handler/jobs under jobs/.
func TestPackage(t *testing.T) {
	for _, tool := range []string{"make", "zip"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed; CI must be able to build the package", tool)
			}
			t.Skipf("%s is not installed: make package cannot run here", tool)
		}
	}
	if testing.Short() {
		t.Skip("builds the linux/amd64 binary")
	}
	dist := t.TempDir()
	cmd := exec.Command("make", "package", "DIST="+dist)
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make package: %v\n%s", err, out)
	}
	zr, err := zip.OpenReader(filepath.Join(dist, "dvbulk.zip"))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()

	jobs, err := filepath.Glob(filepath.Join("..", "..", "handler", "jobs", "*.json"))
	if err != nil || len(jobs) == 0 {
		t.Fatalf("no job specs in handler/jobs (%v): the package would ship an empty jobs folder", err)
	}
	want := []string{"ChunkQueue/function.json", "EnrichTimer/function.json", "bin/dvbulk", "host.json"}
	for _, j := range jobs {
		want = append(want, "jobs/"+filepath.Base(j))
	}
	sort.Strings(want)
	var got []string
	for _, f := range zr.File {
		got = append(got, f.Name)
	}
	sort.Strings(got)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("archive holds\n  %s\nwant exactly\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	for _, f := range zr.File {
		switch f.Name {
		case "bin/dvbulk":
			if f.Mode()&0o111 != 0o111 || !f.Mode().IsRegular() {
				t.Errorf("bin/dvbulk has mode %v, want an executable regular file", f.Mode())
			}
			checkLinuxBinary(t, f)
		default:
			if f.Mode()&0o111 != 0 {
				t.Errorf("%s is executable (%v)", f.Name, f.Mode())
			}
			same(t, f, filepath.Join("..", "..", strings.Replace(f.Name, "jobs/", "handler/jobs/", 1)))
		}
	}
}

// checkLinuxBinary: the Flex workers are linux/amd64 and the binary must not need a libc.
func checkLinuxBinary(t *testing.T, f *zip.File) {
	t.Helper()
	tmp := filepath.Join(t.TempDir(), "dvbulk")
	copyOut(t, f, tmp)
	ef, err := elf.Open(tmp)
	if err != nil {
		t.Fatalf("bin/dvbulk is not an ELF binary: %v", err)
	}
	defer ef.Close()
	if ef.Machine != elf.EM_X86_64 {
		t.Errorf("bin/dvbulk is for %v, want x86-64", ef.Machine)
	}
	if libs, _ := ef.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("bin/dvbulk links %v dynamically, want a static binary", libs)
	}
}

// same fails unless the archive entry holds the repository file's bytes.
func same(t *testing.T, f *zip.File, path string) {
	t.Helper()
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := f.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("%s in the archive differs from %s", f.Name, path)
	}
}

func copyOut(t *testing.T, f *zip.File, dst string) {
	t.Helper()
	rc, err := f.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, rc); err != nil {
		t.Fatal(err)
	}
}

// TestShippedJobSpecsLoad: every spec the package ships under jobs/ is a valid job.
func TestShippedJobSpecsLoad(t *testing.T) {
	jobs, _ := filepath.Glob(filepath.Join("..", "..", "handler", "jobs", "*.json"))
	if len(jobs) == 0 {
		t.Fatal("no job specs in handler/jobs")
	}
	for _, p := range jobs {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := job.Parse(data); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}
