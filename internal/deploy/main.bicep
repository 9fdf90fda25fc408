// dvbulk on Azure Functions Flex Consumption (FC1, runtime custom 1.0): one user-assigned managed
// identity for host storage, checkpoints, Dataverse, Application Insights and the Key Vault
// reference; a storage account with shared-key access disabled; exactly five role assignments
// (roles.bicep, keyvault-role.bicep). Resource types and API versions follow Microsoft's Flex
// Consumption samples (Azure-Samples/azure-functions-flex-consumption-samples, IaC/bicep).
// Not compiled in CI (no Bicep CLI there): validate with `az bicep build --file main.bicep` and
// `az deployment group what-if` (README, Deployment).
targetScope = 'resourceGroup'

@description('Short name that the resource names derive from (lower-case letters and digits).')
@minLength(3)
@maxLength(12)
param baseName string = 'dvbulk'

param location string = resourceGroup().location

@description('Dataverse environment root, e.g. https://contoso.crm.dynamics.com (DATAVERSE_URL).')
param dataverseUrl string

@description('Enrichment service endpoint (ENRICHMENT_URL).')
param enrichmentUrl string

@description('Key Vault secret URI of the enrichment API key, e.g. https://contoso-kv.vault.azure.net/secrets/enrichment-key (no version: the app follows rotations). The key itself never passes through this template.')
param enrichmentKeySecretUri string

@description('Resource group of the Key Vault that holds the enrichment key (default: this one).')
param keyVaultResourceGroup string = resourceGroup().name

@description('Flex Consumption maximumInstanceCount. It applies to each function group: ChunkQueue scales out to at most this many instances (EnrichTimer is a singleton timer: one). All instances share one Dataverse application user budget; see the README (Deployment, instance cap) before raising it.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 8

@description('Memory per instance (MB).')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@description('EnrichTimer NCRONTAB schedule (DVBULK_SCHEDULE); the host reads it from the app settings.')
param schedule string = '0 0 2 * * *'

var token = toLower(uniqueString(subscription().id, resourceGroup().id, baseName))
var storageName = take('${baseName}${token}', 24)
var appName = '${baseName}-${token}'
var deploymentContainer = 'app-package'

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${baseName}-id-${token}'
  location: location
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageName
  location: location
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    allowSharedKeyAccess: false // identities only: no account key, no SAS signed with it
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

// Flex "one deploy" puts the package (make package: dist/dvbulk.zip) here.
resource packageContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainer
}

// The checkpoints (DVBULK_CHECKPOINT_CONTAINER's default).
resource checkpointContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: 'dvbulk-checkpoints'
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource chunkQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: 'dvbulk-chunks'
}

resource deadLetterQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: 'dvbulk-deadletter'
}

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: '${baseName}-log-${token}'
  location: location
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: '${baseName}-appi-${token}'
  location: location
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
    DisableLocalAuth: true // ingestion with the identity only (Monitoring Metrics Publisher)
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: '${baseName}-plan-${token}'
  location: location
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true // Linux
  }
}

// Every app setting the deployment must set, in its identity form; each is in the README's settings
// table (checked by internal/deploy's test). Flex sets the runtime in functionAppConfig, so
// FUNCTIONS_WORKER_RUNTIME and FUNCTIONS_EXTENSION_VERSION are not app settings there.
var appSettings = {
  AzureWebJobsStorage__accountName: storage.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.properties.clientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
  DATAVERSE_URL: dataverseUrl
  DATAVERSE_AUTH: 'managedidentity'
  AZURE_CLIENT_ID: identity.properties.clientId
  ENRICHMENT_URL: enrichmentUrl
  ENRICHMENT_API_KEY: '@Microsoft.KeyVault(SecretUri=${enrichmentKeySecretUri})'
  DVBULK_SCHEDULE: schedule
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identity.id // resolve ENRICHMENT_API_KEY with the user-assigned identity
    siteConfig: {
      minTlsVersion: '1.2'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainer}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'custom'
        version: '1.0'
      }
    }
  }

  resource settings 'config' = {
    name: 'appsettings'
    properties: appSettings
  }
}

module roles 'roles.bicep' = {
  name: 'dvbulk-roles'
  params: {
    storageAccountName: storage.name
    appInsightsName: appInsights.name
    principalId: identity.properties.principalId
  }
}

module vaultRole 'keyvault-role.bicep' = {
  name: 'dvbulk-keyvault-role'
  scope: resourceGroup(keyVaultResourceGroup)
  params: {
    // https://<vault>.vault.azure.net/secrets/<name>[/<version>] -> <vault>
    keyVaultName: split(split(enrichmentKeySecretUri, '//')[1], '.')[0]
    principalId: identity.properties.principalId
  }
}

output functionAppName string = app.name
output storageAccountName string = storage.name
output identityClientId string = identity.properties.clientId
output deploymentContainerUrl string = '${storage.properties.primaryEndpoints.blob}${deploymentContainer}'
