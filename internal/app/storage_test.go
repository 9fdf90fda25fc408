package app

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestStorageSetting(t *testing.T) {
	bc, err := readStorage(storageSetting, envOf(map[string]string{"AzureWebJobsStorage": "UseDevelopmentStorage=true"})).blobConfig()
	if err != nil || !strings.Contains(bc.ConnectionString, "devstoreaccount1") {
		t.Fatalf("UseDevelopmentStorage=true -> %v %v", bc, err)
	}
	if _, err := readStorage(storageSetting, envOf(nil)).blobConfig(); err == nil || !strings.Contains(err.Error(), "AzureWebJobsStorage") {
		t.Fatalf("unset -> %v, want an error naming the setting", err)
	}
	_, err = readStorage(storageSetting, envOf(map[string]string{"AzureWebJobsStorage": "AccountKey=c2VjcmV0"})).blobConfig()
	if err == nil || strings.Contains(err.Error(), "c2VjcmV0") || !strings.Contains(err.Error(), "AzureWebJobsStorage") {
		t.Fatalf("bad string -> %v (must name the setting without echoing the key)", err)
	}
	bc, err = readStorage(storageSetting, envOf(map[string]string{"AzureWebJobsStorage__accountName": "acct",
		"AzureWebJobsStorage__credential": "managedidentity", "AzureWebJobsStorage__clientId": "c1"})).blobConfig()
	if err != nil || bc.ServiceURL != "https://acct.blob.core.windows.net/" || bc.Credential == nil {
		t.Fatalf("identity-based form -> %+v %v", bc, err)
	}
	bc, err = readStorage(storageSetting, envOf(map[string]string{"AzureWebJobsStorage__blobServiceUri": "https://x.blob.core.windows.net"})).blobConfig()
	if err != nil || bc.ServiceURL != "https://x.blob.core.windows.net" {
		t.Fatalf("blobServiceUri -> %+v %v", bc, err)
	}
}

func TestOpenStoreNamesTheSetting(t *testing.T) {
	cfg, err := Load(envOf(map[string]string{"DVBULK_CHECKPOINT_DIR": t.TempDir()}), false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStore(context.Background(), cfg, StoreDir); err != nil {
		t.Fatalf("dir store: %v", err)
	}
	for kind, name := range map[string]string{StoreBlob: "AzureWebJobsStorage", "disk": "DVBULK_CHECKPOINT_STORE"} {
		_, err := OpenStore(context.Background(), cfg, kind)
		var se *SettingError
		if !errors.As(err, &se) || se.Name != name {
			t.Errorf("OpenStore(%q) = %v, want a SettingError naming %s", kind, err, name)
		}
	}
}
