package dataverse

import (
	"errors"
	"fmt"
	"strings"

	"dvbulk/internal/netutil"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Identity is the service principal or user-assigned identity a credential uses: the values of
// AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET.
type Identity struct {
	TenantID     string
	ClientID     string
	ClientSecret string // never logged or put in an error
}

// CredentialFor builds the credential selected by DATAVERSE_AUTH for DATAVERSE_URL:
//
//   - "default" or "": azidentity.DefaultAzureCredential (environment, workload identity, managed
//     identity, Azure CLI ...). The chain reads its own AZURE_* variables from the process.
//   - "managedidentity": system-assigned, or user-assigned when AZURE_CLIENT_ID is set.
//   - "clientsecret": AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET, all required.
//   - "none": no credential (nil, nil); refused unless DATAVERSE_URL is loopback.
//
// id carries the AZURE_* values the caller read (internal/app); errors name the setting, never a
// value of a secret.
func CredentialFor(auth, dataverseURL string, id Identity) (azcore.TokenCredential, error) {
	u, err := parseEnvURL(dataverseURL)
	if err != nil {
		return nil, fmt.Errorf("dataverse: DATAVERSE_URL: %w", err)
	}
	switch strings.ToLower(strings.TrimSpace(auth)) {
	case "", "default":
		cred, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{
			TenantID: id.TenantID,
		})
		if err != nil {
			return nil, fmt.Errorf("dataverse: DATAVERSE_AUTH=default: %w", err)
		}
		return cred, nil
	case "managedidentity":
		var opts azidentity.ManagedIdentityCredentialOptions
		if id.ClientID != "" {
			opts.ID = azidentity.ClientID(id.ClientID)
		}
		cred, err := azidentity.NewManagedIdentityCredential(&opts)
		if err != nil {
			return nil, fmt.Errorf("dataverse: DATAVERSE_AUTH=managedidentity: %w", err)
		}
		return cred, nil
	case "clientsecret":
		var missing []string
		for _, v := range []struct{ name, value string }{
			{"AZURE_TENANT_ID", id.TenantID}, {"AZURE_CLIENT_ID", id.ClientID}, {"AZURE_CLIENT_SECRET", id.ClientSecret},
		} {
			if strings.TrimSpace(v.value) == "" {
				missing = append(missing, v.name)
			}
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("dataverse: DATAVERSE_AUTH=clientsecret needs %s", strings.Join(missing, ", "))
		}
		cred, err := azidentity.NewClientSecretCredential(id.TenantID, id.ClientID, id.ClientSecret, nil)
		if err != nil {
			// azidentity validates the tenant id format; its message does not contain the secret.
			return nil, fmt.Errorf("dataverse: DATAVERSE_AUTH=clientsecret: %w", err)
		}
		return cred, nil
	case "none":
		if !netutil.IsLoopback(u.Hostname()) {
			return nil, errors.New("dataverse: DATAVERSE_AUTH=none is refused because DATAVERSE_URL is not a loopback address")
		}
		return nil, nil
	default:
		return nil, fmt.Errorf("dataverse: DATAVERSE_AUTH=%q: want default, managedidentity, clientsecret or none", truncate(auth, 40))
	}
}
