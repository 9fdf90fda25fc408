// Example parameters: copy, fill in, and deploy with
//   az deployment group create -g <resource group> -f internal/deploy/main.bicep -p internal/deploy/main.bicepparam
// Nothing here is secret: the enrichment key stays in Key Vault and is referenced by its URI.
using 'main.bicep'

param baseName = 'dvbulk'
param dataverseUrl = 'https://contoso.crm.dynamics.com'
param enrichmentUrl = 'https://enrich.example.com/v1/lookup'
param enrichmentKeySecretUri = 'https://contoso-kv.vault.azure.net/secrets/enrichment-key'
// param keyVaultResourceGroup = 'shared-secrets'
// Instance cap of ChunkQueue: see the README (Deployment, instance cap) before raising it.
param maximumInstanceCount = 8
// param schedule = '0 0 2 * * *'
