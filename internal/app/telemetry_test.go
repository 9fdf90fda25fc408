package app

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestTelemetrySettings(t *testing.T) {
	tests := []struct {
		interval, retention string
		wantInterval        time.Duration
		wantRetention       time.Duration
		bad                 string // the setting the error must name
	}{
		{"", "", 5 * time.Second, 720 * time.Hour, ""},
		{"0", "0", 0, 0, ""},
		{"0s", "48h", 0, 48 * time.Hour, ""},
		{"1s", "", time.Second, 720 * time.Hour, ""},
		{"500ms", "", 0, 0, "DVBULK_TELEMETRY_INTERVAL"},
		{"10m", "", 0, 0, "DVBULK_TELEMETRY_INTERVAL"},
		{"often", "", 0, 0, "DVBULK_TELEMETRY_INTERVAL"},
		{"", "-1h", 0, 0, "DVBULK_TELEMETRY_RETENTION"},
		{"", "30m", 0, 0, "DVBULK_TELEMETRY_RETENTION"},
	}
	for _, tc := range tests {
		t.Run(tc.interval+"/"+tc.retention, func(t *testing.T) {
			cfg, err := Load(envOf(map[string]string{"DVBULK_TELEMETRY_INTERVAL": tc.interval, "DVBULK_TELEMETRY_RETENTION": tc.retention}), false)
			if tc.bad != "" {
				var se *SettingError
				if !errors.As(err, &se) || se.Name != tc.bad {
					t.Fatalf("error %v, want one naming %s", err, tc.bad)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.TelemetryInterval != tc.wantInterval || cfg.TelemetryRetention != tc.wantRetention {
				t.Fatalf("interval %s retention %s, want %s %s", cfg.TelemetryInterval, cfg.TelemetryRetention, tc.wantInterval, tc.wantRetention)
			}
		})
	}
}

func TestReportSettingsCarryNoSecrets(t *testing.T) {
	cfg, err := Load(envOf(map[string]string{"ENRICHMENT_API_KEY": "s3cret-key", "ENRICHMENT_URL": "http://127.0.0.1:1/enrich?code=s3cret-code",
		"DVBULK_DATAVERSE_CONCURRENCY": "12", "AzureWebJobsStorage": "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=s3cret-account"}), false)
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.ReportSettings()
	if got["DVBULK_DATAVERSE_CONCURRENCY"] != "12" || got["DVBULK_TELEMETRY_INTERVAL"] != "5s" {
		t.Errorf("settings %v", got)
	}
	for k, v := range got {
		if strings.Contains(v, "s3cret") {
			t.Errorf("%s carries a secret: %q", k, v)
		}
		found := false
		for _, s := range Settings {
			found = found || s.Name == k
		}
		if !found {
			t.Errorf("%s is not a setting", k)
		}
	}
}
