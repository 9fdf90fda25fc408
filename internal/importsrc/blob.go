// Package importsrc reads import jobs' files from Azure Blob Storage: the container named by
// DVBULK_IMPORT_CONTAINER in the account of AzureWebJobsStorage.
package importsrc

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/job"
)

// Blob is a job.ImportSource over one container.
type Blob struct{ c *container.Client }

// NewBlob returns the import source of cfg's container.
func NewBlob(cfg checkpoint.BlobConfig) (*Blob, error) {
	c, err := cfg.ContainerClient()
	if err != nil {
		return nil, err
	}
	return &Blob{c: c}, nil
}

// Open streams the blob from offset; its version is the blob's ETag. A read that starts at the
// blob's end (a planning step that stopped just before end of file) is an empty stream.
func (b *Blob) Open(ctx context.Context, name string, offset int64) (io.ReadCloser, string, error) {
	bc := b.c.NewBlobClient(name)
	resp, err := bc.DownloadStream(ctx, &blob.DownloadStreamOptions{Range: blob.HTTPRange{Offset: offset}})
	switch {
	case bloberror.HasCode(err, bloberror.BlobNotFound, bloberror.ContainerNotFound):
		return nil, "", fmt.Errorf("%w: blob %s", job.ErrSourceMissing, name)
	case bloberror.HasCode(err, bloberror.InvalidRange):
		props, perr := bc.GetProperties(ctx, nil)
		if perr != nil {
			return nil, "", fmt.Errorf("importsrc: %s: %s", name, checkpoint.Redact(perr.Error()))
		}
		return io.NopCloser(strings.NewReader("")), string(*props.ETag), nil
	case err != nil:
		return nil, "", fmt.Errorf("importsrc: read %s: %s", name, checkpoint.Redact(err.Error()))
	}
	version := ""
	if resp.ETag != nil {
		version = string(*resp.ETag)
	}
	// The retry reader resumes a body cut off mid-stream from where it stopped, against the same ETag.
	return resp.NewRetryReader(ctx, &blob.RetryReaderOptions{MaxRetries: 3}), version, nil
}
