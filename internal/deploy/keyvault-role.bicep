// Key Vault Secrets User on the vault that holds the enrichment key, so the app resolves its
// ENRICHMENT_API_KEY Key Vault reference with the user-assigned identity (keyVaultReferenceIdentity).
// Deployed into the vault's resource group; the vault must use the Azure RBAC permission model.
param keyVaultName string
param principalId string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, '4633458b-17de-408a-b874-0445c86b69e6')
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4633458b-17de-408a-b874-0445c86b69e6')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
