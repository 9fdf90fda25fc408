package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestMisconfigurationExits2NamingTheSetting(t *testing.T) {
	base := map[string]string{"DATAVERSE_URL": "http://127.0.0.1:5555", "DATAVERSE_AUTH": "none", "ENRICHMENT_URL": "http://127.0.0.1:5556/enrich"}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range base {
			m[a] = b
		}
		if v == "<unset>" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		setting string
	}{
		{"missing url", with("DATAVERSE_URL", "<unset>"), []string{"run"}, "DATAVERSE_URL"},
		{"malformed url", with("DATAVERSE_URL", "contoso.crm.dynamics.com"), []string{"run"}, "DATAVERSE_URL"},
		{"http to a real host", with("DATAVERSE_URL", "http://contoso.crm.dynamics.com"), []string{"run"}, "DATAVERSE_URL"},
		{"url with a path", with("DATAVERSE_URL", "https://contoso.crm.dynamics.com/api/data/v9.2"), []string{"run"}, "DATAVERSE_URL"},
		{"auth none off loopback", map[string]string{"DATAVERSE_URL": "https://contoso.crm.dynamics.com", "DATAVERSE_AUTH": "none", "ENRICHMENT_URL": "https://e.example.com"}, []string{"run"}, "DATAVERSE_AUTH"},
		{"unknown auth", with("DATAVERSE_AUTH", "password"), []string{"run"}, "DATAVERSE_AUTH"},
		{"unknown job", with("DVBULK_JOB", "nightly-enrichmnet"), []string{"run"}, "DVBULK_JOB"},
		{"bad number", with("DVBULK_CHUNK_SIZE", "lots"), []string{"run"}, "DVBULK_CHUNK_SIZE"},
		{"chunk too big", with("DVBULK_CHUNK_SIZE", "5000"), []string{"run"}, "DVBULK_CHUNK_SIZE"},
		{"bad duration", with("DVBULK_LEASE", "forever"), []string{"run"}, "DVBULK_LEASE"},
		{"bad bool", with("DVBULK_DRY_RUN", "maybe"), []string{"run"}, "DVBULK_DRY_RUN"},
		{"missing enrichment url", with("ENRICHMENT_URL", "<unset>"), []string{"run"}, "ENRICHMENT_URL"},
		{"bad log level", with("DVBULK_LOG_LEVEL", "loud"), []string{"run"}, "DVBULK_LOG_LEVEL"},
		{"jobs directory missing", with("DVBULK_JOBS_DIR", "/nonexistent/dvbulk-jobs"), []string{"run"}, "DVBULK_JOBS_DIR"},
		{"handler without port", base, nil, "FUNCTIONS_CUSTOMHANDLER_PORT"},
		{"handler with bad setting", with("FUNCTIONS_CUSTOMHANDLER_PORT", "7071"), nil, ""},
	}
	tests[len(tests)-1].env["ENRICHMENT_CONCURRENCY"] = "0"
	tests[len(tests)-1].setting = "ENRICHMENT_CONCURRENCY"
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), tt.args, envOf(tt.env), &out, &errb)
			if code != 2 {
				t.Fatalf("exit %d, want 2 (stderr %q)", code, errb.String())
			}
			lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], tt.setting) {
				t.Fatalf("stderr %q: want one line naming %s", errb.String(), tt.setting)
			}
		})
	}
}

func TestHelpForEverySubcommand(t *testing.T) {
	for name := range commands {
		t.Run(name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(context.Background(), []string{name, "--help"}, envOf(nil), &out, &errb); code != 0 {
				t.Fatalf("--help exit %d", code)
			}
			help := out.String() + errb.String()
			if !strings.Contains(help, "Usage: dvbulk "+name) || !strings.Contains(help, "Examples:") {
				t.Fatalf("help lacks usage or examples:\n%s", help)
			}
		})
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"frobnicate"}, envOf(nil), &out, &errb); code != 2 || !strings.Contains(errb.String(), "unknown command") {
		t.Fatalf("unknown command: exit %d, %q", code, errb.String())
	}
	if code := run(context.Background(), []string{"run", "--workers", "0"}, envOf(nil), &out, &errb); code != 2 {
		t.Fatalf("bad flag value: exit %d", code)
	}
}

// A bad spec in the jobs directory stops the custom handler at start: exit 2, one line naming the
// setting, the file and the field.
func TestBadJobSpecStopsTheHandlerAtStart(t *testing.T) {
	dir := t.TempDir()
	spec := `{"name":"bad-one","table":{"entitySet":"accounts","logicalName":"account","key":"accountid"},
"columns":{"accountid":"guid","description":"string"},"input":["description"],"writable":["description"],
"transform":{"kind":"recalculate","set":{"description":"\"x\""}},"write":{"mode":"bulk","batchSize":5000}}`
	if err := os.WriteFile(filepath.Join(dir, "bad-one.json"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DATAVERSE_URL": "http://127.0.0.1:5555", "DATAVERSE_AUTH": "none", "ENRICHMENT_URL": "http://127.0.0.1:5556/enrich",
		"FUNCTIONS_CUSTOMHANDLER_PORT": "7071", "DVBULK_JOBS_DIR": dir}
	var out, errb bytes.Buffer
	if code := run(context.Background(), nil, envOf(env), &out, &errb); code != 2 {
		t.Fatalf("exit %d, want 2 (stderr %q)", code, errb.String())
	}
	line := strings.TrimSpace(errb.String())
	for _, want := range []string{"DVBULK_JOBS_DIR", "bad-one.json", "write.batchSize"} {
		if strings.Count(line, "\n") > 0 || !strings.Contains(line, want) {
			t.Errorf("stderr %q: want one line naming %s", line, want)
		}
	}
}
