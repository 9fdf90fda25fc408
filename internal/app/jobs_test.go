package app

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sampleSpec is the example custom job the package ships (handler/jobs/size-band.json).
func sampleSpec(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "handler", "jobs", "size-band.json"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func jobsEnv(extra map[string]string) func(string) string {
	env := map[string]string{"DATAVERSE_URL": "http://127.0.0.1:1", "DATAVERSE_AUTH": "none", "ENRICHMENT_URL": "http://127.0.0.1:2/e"}
	for k, v := range extra {
		env[k] = v
	}
	return envOf(env)
}

// DVBULK_JOBS_DIR resolves against the app root; its jobs are known by name (to DVBULK_JOB and to
// start messages); the default directory may be absent; a named one must exist; a bad spec stops
// the start naming the setting, the file and the field.
func TestJobsDirectory(t *testing.T) {
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "jobs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(filepath.Join(root, "jobs", "size-band.json"), sampleSpec(t)); err != nil {
		t.Fatal(err)
	}
	t.Run("default directory under the app root", func(t *testing.T) {
		c, err := Load(jobsEnv(map[string]string{"FUNCTIONS_APP_ROOT_PATH": root, "DVBULK_JOB": "size-band"}), true)
		if err != nil {
			t.Fatal(err)
		}
		if c.Job.Name != "size-band" || c.JobsDir != filepath.Join(root, "jobs") {
			t.Fatalf("job %q from %q", c.Job.Name, c.JobsDir)
		}
		if _, err := c.Jobs.Lookup("size-band"); err != nil {
			t.Fatalf("start messages cannot name the directory's job: %v", err)
		}
	})
	t.Run("set relative to the app root", func(t *testing.T) {
		c, err := Load(jobsEnv(map[string]string{"FUNCTIONS_APP_ROOT_PATH": filepath.Dir(root), "DVBULK_JOBS_DIR": filepath.Join(filepath.Base(root), "jobs")}), true)
		if err != nil || c.JobsDir != filepath.Join(root, "jobs") {
			t.Fatalf("%v %v", c, err)
		}
	})
	t.Run("default directory absent", func(t *testing.T) {
		c, err := Load(jobsEnv(map[string]string{"FUNCTIONS_APP_ROOT_PATH": t.TempDir()}), true)
		if err != nil || c.Job.Name != "nightly-enrichment" {
			t.Fatalf("no jobs directory: %v %v, want the built-in jobs", c, err)
		}
	})
	bad := t.TempDir()
	if err := writeFile(filepath.Join(bad, "broken.json"), strings.Replace(sampleSpec(t), `"batchSize": 200`, `"batchSize": 5000`, 1)); err != nil {
		t.Fatal(err)
	}
	for name, env := range map[string]map[string]string{
		"set but missing":     {"DVBULK_JOBS_DIR": filepath.Join(root, "nope")},
		"a bad spec":          {"DVBULK_JOBS_DIR": bad},
		"a bad spec, default": {"FUNCTIONS_APP_ROOT_PATH": filepath.Dir(bad), "DVBULK_JOBS_DIR": ""},
	} {
		t.Run(name, func(t *testing.T) {
			if name == "a bad spec, default" {
				// The default name "jobs" under a root whose jobs folder holds the bad spec.
				r := t.TempDir()
				if err := os.Symlink(bad, filepath.Join(r, "jobs")); err != nil {
					t.Skip(err)
				}
				env = map[string]string{"FUNCTIONS_APP_ROOT_PATH": r}
			}
			_, err := Load(jobsEnv(env), true)
			var se *SettingError
			if !errors.As(err, &se) || se.Name != "DVBULK_JOBS_DIR" {
				t.Fatalf("Load = %v, want a SettingError naming DVBULK_JOBS_DIR", err)
			}
			if strings.Contains(name, "bad spec") && (!strings.Contains(err.Error(), "broken.json") || !strings.Contains(err.Error(), "write.batchSize")) {
				t.Fatalf("error %q does not name the file and the field", err)
			}
		})
	}
}
