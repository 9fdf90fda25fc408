package checkpoint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
)

// DevelopmentConnectionString is what UseDevelopmentStorage=true means: Azurite's well-known
// development account on its default loopback ports (the key is public, not a secret).
const DevelopmentConnectionString = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;" +
	"AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;" +
	"BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"

// BlobConfig says how to reach a container: a connection string, or a service URL with an Entra
// credential (identity-based connections, no keys).
type BlobConfig struct {
	ConnectionString string
	ServiceURL       string
	Credential       azcore.TokenCredential
	Container        string
	ClientOptions    *azblob.ClientOptions // tests inject transports and policies for faults
}

// ParseConnectionString checks a storage connection string (or UseDevelopmentStorage=true, which
// means Azurite's development account) without echoing a key in its errors.
func ParseConnectionString(cs string) (BlobConfig, error) {
	cs = strings.TrimSpace(cs)
	if strings.EqualFold(strings.ReplaceAll(cs, " ", ""), "UseDevelopmentStorage=true") {
		return BlobConfig{ConnectionString: DevelopmentConnectionString}, nil
	}
	if err := checkConnectionString(cs); err != nil {
		return BlobConfig{}, err
	}
	return BlobConfig{ConnectionString: cs}, nil
}

func checkConnectionString(cs string) error {
	hasAccount := false
	for _, part := range strings.Split(cs, ";") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		k, _, ok := strings.Cut(part, "=")
		if !ok {
			return errors.New("connection string has a part without '=' (expected Key=Value;...)")
		}
		switch strings.ToLower(k) {
		case "accountname", "blobendpoint":
			hasAccount = true
		}
	}
	if !hasAccount {
		return errors.New("connection string names neither AccountName nor BlobEndpoint")
	}
	return nil
}

var secretRE = regexp.MustCompile(`(?i)(AccountKey|SharedAccessSignature|sig)=[^;&\s]*`)

// Redact hides keys and SAS signatures in a connection string or URL, for error messages and logs.
func Redact(s string) string { return secretRE.ReplaceAllString(s, "$1=REDACTED") }

// Blob is a Store in an Azure Blob Storage container (one blob per document).
type Blob struct {
	c *container.Client
}

// NewBlob connects to the container, creating it if missing.
func NewBlob(ctx context.Context, cfg BlobConfig) (*Blob, error) {
	c, err := cfg.ContainerClient()
	if err != nil {
		return nil, err
	}
	b := &Blob{c: c}
	if _, err := b.c.Create(ctx, nil); err != nil && !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
		return nil, fmt.Errorf("checkpoint: create container %s: %s", cfg.Container, Redact(err.Error()))
	}
	return b, nil
}

// ContainerClient returns a client of cfg's container (without touching the network), for the
// store and for other readers of the same account (import files).
func (cfg BlobConfig) ContainerClient() (*container.Client, error) {
	if cfg.Container == "" {
		return nil, errors.New("checkpoint: no container name")
	}
	var svc *azblob.Client
	var err error
	switch {
	case cfg.ConnectionString != "":
		svc, err = azblob.NewClientFromConnectionString(cfg.ConnectionString, cfg.ClientOptions)
	case cfg.ServiceURL != "" && cfg.Credential != nil:
		svc, err = azblob.NewClient(cfg.ServiceURL, cfg.Credential, cfg.ClientOptions)
	default:
		return nil, errors.New("checkpoint: no connection string or service URL")
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: blob client: %s", Redact(err.Error()))
	}
	return svc.ServiceClient().NewContainerClient(cfg.Container), nil
}

func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case bloberror.HasCode(err, bloberror.ContainerNotFound):
		return ErrStoreMissing
	case bloberror.HasCode(err, bloberror.BlobNotFound):
		return ErrNotFound
	case bloberror.HasCode(err, bloberror.ConditionNotMet, bloberror.BlobAlreadyExists):
		return ErrConflict
	}
	return fmt.Errorf("checkpoint: %s", Redact(err.Error()))
}

// Get implements Store.
func (b *Blob) Get(ctx context.Context, name string) ([]byte, ETag, error) {
	if err := ValidName(name); err != nil {
		return nil, "", err
	}
	resp, err := b.c.NewBlobClient(name).DownloadStream(ctx, nil)
	if err != nil {
		return nil, "", mapErr(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxDocument+1))
	if err != nil {
		return nil, "", fmt.Errorf("checkpoint: read %s: %w", name, err)
	}
	if len(data) > MaxDocument {
		return nil, "", fmt.Errorf("checkpoint: %s is larger than %d bytes", name, MaxDocument)
	}
	return data, ETag(*resp.ETag), nil
}

func (b *Blob) upload(ctx context.Context, name string, data []byte, cond blob.ModifiedAccessConditions) (ETag, error) {
	if len(data) > MaxDocument {
		return "", fmt.Errorf("checkpoint: %s is %d bytes, over %d", name, len(data), MaxDocument)
	}
	resp, err := b.c.NewBlockBlobClient(name).UploadBuffer(ctx, data, &blockblob.UploadBufferOptions{
		AccessConditions: &blob.AccessConditions{ModifiedAccessConditions: &cond},
		HTTPHeaders:      &blob.HTTPHeaders{BlobContentType: ptr(contentType(name))},
	})
	if err == nil {
		return ETag(*resp.ETag), nil
	}
	err = mapErr(err)
	if errors.Is(err, ErrConflict) {
		// The answer to an earlier attempt may have been lost and the SDK's retry then hit our own
		// write: if the stored bytes are exactly ours, the write happened.
		if cur, tag, gerr := b.Get(ctx, name); gerr == nil && bytes.Equal(cur, data) {
			return tag, nil
		}
	}
	return "", err
}

// Create implements Store.
func (b *Blob) Create(ctx context.Context, name string, data []byte) (ETag, error) {
	if err := ValidName(name); err != nil {
		return "", err
	}
	tag, err := b.upload(ctx, name, data, blob.ModifiedAccessConditions{IfNoneMatch: ptr(azcore.ETagAny)})
	if errors.Is(err, ErrStoreMissing) {
		// The container was deleted under us. Creating a document is how new work starts, so the
		// container is made again; reads and updates of the lost documents keep failing closed.
		if _, cerr := b.c.Create(ctx, nil); cerr != nil && !bloberror.HasCode(cerr, bloberror.ContainerAlreadyExists, bloberror.ContainerBeingDeleted) {
			return "", fmt.Errorf("checkpoint: recreate container: %s", Redact(cerr.Error()))
		}
		tag, err = b.upload(ctx, name, data, blob.ModifiedAccessConditions{IfNoneMatch: ptr(azcore.ETagAny)})
	}
	return tag, err
}

// Update implements Store.
func (b *Blob) Update(ctx context.Context, name string, data []byte, match ETag) (ETag, error) {
	if err := ValidName(name); err != nil {
		return "", err
	}
	if match == "" {
		return "", ErrConflict
	}
	return b.upload(ctx, name, data, blob.ModifiedAccessConditions{IfMatch: ptr(azcore.ETag(match))})
}

// Delete implements Store.
func (b *Blob) Delete(ctx context.Context, name string, match ETag) error {
	if err := ValidName(name); err != nil {
		return err
	}
	opts := &blob.DeleteOptions{}
	if match != "" {
		opts.AccessConditions = &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfMatch: ptr(azcore.ETag(match))}}
	}
	_, err := b.c.NewBlobClient(name).Delete(ctx, opts)
	return mapErr(err)
}

// List implements Store, page by page.
func (b *Blob) List(ctx context.Context, prefix string, fn func(string) error) error {
	pager := b.c.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Prefix: &prefix})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return mapErr(err)
		}
		for _, item := range page.Segment.BlobItems {
			if err := fn(*item.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// contentType is the blob's Content-Type: documents are JSON, except a run's report.html, which a
// browser then opens straight from the portal or a SAS link.
func contentType(name string) string {
	if strings.HasSuffix(name, ".html") {
		return "text/html; charset=utf-8"
	}
	return "application/json"
}
