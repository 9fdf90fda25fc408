package app

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"dvbulk/internal/checkpoint"
)

// Checkpoint store kinds (DVBULK_CHECKPOINT_STORE and the CLI's --store).
const (
	StoreBlob = "blob" // AzureWebJobsStorage, shared by every instance
	StoreDir  = "dir"  // a local directory, for the console and the demo (one machine only)
)

// storageSetting is the Functions storage connection the checkpoints use.
const storageSetting = "AzureWebJobsStorage"

// Storage is a Functions storage connection setting as the host reads it: the connection string
// itself, or the identity-based form <name>__blobServiceUri / <name>__accountName with optional
// <name>__credential=managedidentity and <name>__clientId (Microsoft's "Connecting to host storage
// with an identity" in "Azure Functions developer guide").
type Storage struct {
	Name             string // the setting's name, for error messages
	ConnectionString string
	BlobServiceURI   string
	AccountName      string
	Credential       string
	ClientID         string
}

func readStorage(name string, getenv func(string) string) Storage {
	return Storage{
		Name:             name,
		ConnectionString: strings.TrimSpace(getenv(name)),
		BlobServiceURI:   strings.TrimSpace(getenv(name + "__blobServiceUri")),
		AccountName:      strings.TrimSpace(getenv(name + "__accountName")),
		Credential:       strings.TrimSpace(getenv(name + "__credential")),
		ClientID:         strings.TrimSpace(getenv(name + "__clientId")),
	}
}

// blobConfig turns the setting into how to reach the container: a connection string, or a service
// URL with an Entra credential (no keys).
func (s Storage) blobConfig() (checkpoint.BlobConfig, error) {
	if s.ConnectionString != "" {
		bc, err := checkpoint.ParseConnectionString(s.ConnectionString)
		if err != nil {
			return checkpoint.BlobConfig{}, fmt.Errorf("%s: %w", s.Name, err)
		}
		return bc, nil
	}
	uri := s.BlobServiceURI
	if uri == "" && s.AccountName != "" {
		uri = "https://" + s.AccountName + ".blob.core.windows.net/"
	}
	if uri == "" {
		return checkpoint.BlobConfig{}, fmt.Errorf("%s is not set (a connection string, UseDevelopmentStorage=true, or %s__blobServiceUri / %s__accountName)", s.Name, s.Name, s.Name)
	}
	var cred azcore.TokenCredential
	var err error
	if strings.EqualFold(s.Credential, "managedidentity") {
		opts := &azidentity.ManagedIdentityCredentialOptions{}
		if s.ClientID != "" {
			opts.ID = azidentity.ClientID(s.ClientID)
		}
		cred, err = azidentity.NewManagedIdentityCredential(opts)
	} else {
		cred, err = azidentity.NewDefaultAzureCredential(nil)
	}
	if err != nil {
		return checkpoint.BlobConfig{}, fmt.Errorf("%s: credential: %w", s.Name, err)
	}
	return checkpoint.BlobConfig{ServiceURL: uri, Credential: cred}, nil
}

// OpenStore opens the checkpoint store of the given kind (StoreBlob or StoreDir). Configuration
// problems are *SettingError (exit 2); an unreachable store is a plain error.
func OpenStore(ctx context.Context, cfg *Config, kind string) (checkpoint.Store, error) {
	switch kind {
	case StoreDir:
		st, err := checkpoint.NewDir(cfg.CheckpointDir)
		if err != nil {
			return nil, &SettingError{Name: "DVBULK_CHECKPOINT_DIR", Problem: err.Error()}
		}
		return st, nil
	case StoreBlob:
		bc, err := cfg.Storage.blobConfig()
		if err != nil {
			return nil, &SettingError{Name: storageSetting, Problem: err.Error()}
		}
		bc.Container = cfg.Container
		st, err := checkpoint.NewBlob(ctx, bc)
		if err != nil {
			return nil, fmt.Errorf("checkpoint store: %w", err)
		}
		return st, nil
	}
	return nil, &SettingError{Name: "DVBULK_CHECKPOINT_STORE", Problem: fmt.Sprintf("must be blob or dir, got %q", kind)}
}

// OpenStoreRetrying is OpenStore that tolerates storage briefly unreachable at start (the host would
// restart the worker anyway, but a few quick retries keep a cold start from failing). Configuration
// problems are returned at once.
func OpenStoreRetrying(ctx context.Context, cfg *Config, kind string) (checkpoint.Store, error) {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		var st checkpoint.Store
		if st, err = OpenStore(ctx, cfg, kind); err == nil {
			return st, nil
		}
		if _, isSetting := err.(*SettingError); isSetting {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Duration(attempt+1) * time.Second):
		}
	}
	return nil, err
}
