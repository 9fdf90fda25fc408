package deploy

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

func load(t *testing.T) map[string]string {
	t.Helper()
	files, err := LoadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"main.bicep", "roles.bicep", "keyvault-role.bicep", "main.bicepparam"} {
		if _, ok := files[want]; !ok {
			t.Fatalf("%s missing", want)
		}
	}
	return files
}

func resourcesOf(t *testing.T, src, typ string) []Resource {
	t.Helper()
	res, err := Resources(src)
	if err != nil {
		t.Fatal(err)
	}
	var out []Resource
	for _, r := range res {
		if r.Type == typ && !r.Existing {
			out = append(out, r)
		}
	}
	return out
}

func props(t *testing.T, body string) map[string]string {
	t.Helper()
	p, err := Properties(strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(body), "{"), "}")))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// appSettings returns the settings main.bicep gives the app, checking that the app's appsettings
// config is exactly that variable.
func appSettings(t *testing.T, files map[string]string) map[string]string {
	t.Helper()
	body, err := Var(files["main.bicep"], "appSettings")
	if err != nil {
		t.Fatal(err)
	}
	settings, err := Properties(body)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`name:\s*'appsettings'\s*\n\s*properties:\s*appSettings\s*\n`).MatchString(files["main.bicep"]) {
		t.Fatal("the app's appsettings config is not `properties: appSettings`: the settings this test reads are not the ones deployed")
	}
	return settings
}

// readmeSettings returns the names in the README's settings table.
func readmeSettings(t *testing.T) map[string]bool {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	start := strings.Index(text, "\n## Settings\n")
	if start < 0 {
		t.Fatal("README has no Settings section")
	}
	section := text[start+1:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([^`]+)` \\|").FindAllStringSubmatch(section, -1) {
		names[m[1]] = true
	}
	if len(names) == 0 {
		t.Fatal("README settings table has no rows")
	}
	return names
}

func TestEverySettingIsDocumented(t *testing.T) {
	files := load(t)
	settings := appSettings(t, files)
	documented := readmeSettings(t)
	for name := range settings {
		if !documented[name] {
			t.Errorf("main.bicep sets %s, which is not in the README's settings table", name)
		}
	}
	// The identity forms, not a connection string or a secret.
	for name, want := range map[string]string{
		"DATAVERSE_AUTH":                   "'managedidentity'",
		"AzureWebJobsStorage__credential":  "'managedidentity'",
		"AzureWebJobsStorage__clientId":    "identity.properties.clientId",
		"AZURE_CLIENT_ID":                  "identity.properties.clientId",
		"AzureWebJobsStorage__accountName": "storage.name",
	} {
		if got := settings[name]; got != want {
			t.Errorf("%s = %q, want %s", name, got, want)
		}
	}
	for _, name := range []string{"AzureWebJobsStorage", "FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "AZURE_CLIENT_SECRET", "APPINSIGHTS_INSTRUMENTATIONKEY"} {
		if _, ok := settings[name]; ok {
			t.Errorf("main.bicep sets %s (a key-based form, or not allowed on Flex Consumption)", name)
		}
	}
	// The shared budget already splits min(hint, DVBULK_DATAVERSE_CONCURRENCY) over the live instances;
	// a per-instance value divided by the instance count in the template would divide twice.
	if v, ok := settings["DVBULK_DATAVERSE_CONCURRENCY"]; ok {
		t.Errorf("main.bicep sets DVBULK_DATAVERSE_CONCURRENCY = %s; leave it at the default so the shared budget divides it once", v)
	}
	for _, name := range []string{"DATAVERSE_URL", "ENRICHMENT_URL", "ENRICHMENT_API_KEY", "DVBULK_SCHEDULE", "APPLICATIONINSIGHTS_CONNECTION_STRING", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"} {
		if _, ok := settings[name]; !ok {
			t.Errorf("main.bicep does not set %s", name)
		}
	}
}

func TestRolesAreExactlyTheDocumentedOnes(t *testing.T) {
	for _, err := range CheckRoles(load(t)) {
		t.Error(err)
	}
}

// TestRoleCheckFailsOnMissingOrExtraRole: the check itself catches a dropped assignment, an added
// one (Contributor on the account), a wrong scope and a role id hidden in a variable.
func TestRoleCheckFailsOnMissingOrExtraRole(t *testing.T) {
	files := load(t)
	mutate := func(file, from, to string) map[string]string {
		t.Helper()
		if !strings.Contains(files[file], from) {
			t.Fatalf("%s does not contain %q", file, from)
		}
		out := map[string]string{}
		for k, v := range files {
			out[k] = v
		}
		out[file] = strings.Replace(files[file], from, to, 1)
		return out
	}
	vault := files["keyvault-role.bicep"]
	start := strings.Index(vault, "resource secretsUser")
	extra := `
resource contributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, 'contributor')
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b24988ac-6180-42a0-ab88-20f7382dd24c')
    principalId: principalId
  }
}
`
	cases := map[string]struct {
		files map[string]string
		want  string
	}{
		"missing":     {mutate("keyvault-role.bicep", vault[start:], ""), "Key Vault Secrets User"},
		"extra":       {mutate("roles.bicep", "resource queueContributor", extra+"resource queueContributor"), "b24988ac-6180-42a0-ab88-20f7382dd24c"},
		"twice":       {mutate("roles.bicep", "roleDefinitions', '974c5e8b-45b9-4653-ba55-5f855dd0fb88'", "roleDefinitions', 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'"), "assigned 2 times"},
		"wrong scope": {mutate("roles.bicep", "scope: appInsights", "scope: storage"), "scoped to"},
		"hidden":      {mutate("roles.bicep", "param principalId string", "param principalId string\nvar x = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'x')"), "outside a role assignment"},
		"registry":    {mutate("main.bicep", "module roles 'roles.bicep'", "module roles 'br/public:avm/ptn/authorization/resource-role-assignment:0.1.2'"), "registry module"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			errs := CheckRoles(c.files)
			for _, err := range errs {
				if strings.Contains(err.Error(), c.want) {
					return
				}
			}
			t.Errorf("errors %v, want one mentioning %q", errs, c.want)
		})
	}
}

func TestSharedKeyAccessIsOff(t *testing.T) {
	files := load(t)
	accounts := resourcesOf(t, files["main.bicep"], "Microsoft.Storage/storageAccounts")
	if len(accounts) != 1 {
		t.Fatalf("%d storage accounts deployed, want 1", len(accounts))
	}
	p := props(t, "{"+accounts[0].Body+"}")
	inner := props(t, p["properties"])
	for k, want := range map[string]string{"allowSharedKeyAccess": "false", "allowBlobPublicAccess": "false", "minimumTlsVersion": "'TLS1_2'"} {
		if inner[k] != want {
			t.Errorf("storage account %s = %q, want %s", k, inner[k], want)
		}
	}
}

func TestNoSecretValue(t *testing.T) {
	files := load(t)
	for _, err := range CheckNoSecrets(files, appSettings(t, files)) {
		t.Error(err)
	}
	// The check finds what it looks for.
	bad := map[string]string{"x.bicep": "var c = 'DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc'\n@secure()\nparam k string = 'x'"}
	if errs := CheckNoSecrets(bad, map[string]string{"ENRICHMENT_API_KEY": "'plain-key'"}); len(errs) != 3 {
		t.Errorf("CheckNoSecrets on a key, a secure default and a plain API key: %v, want 3 errors", errs)
	}
}

func TestFlexConsumptionApp(t *testing.T) {
	files := load(t)
	main := files["main.bicep"]
	plans := resourcesOf(t, main, "Microsoft.Web/serverfarms")
	if len(plans) != 1 || !regexp.MustCompile(`tier:\s*'FlexConsumption'`).MatchString(plans[0].Body) || !regexp.MustCompile(`name:\s*'FC1'`).MatchString(plans[0].Body) {
		t.Fatalf("want one FC1 FlexConsumption plan, got %+v", plans)
	}
	sites := resourcesOf(t, main, "Microsoft.Web/sites")
	if len(sites) != 1 {
		t.Fatalf("%d sites, want 1", len(sites))
	}
	body := sites[0].Body
	for what, re := range map[string]string{
		"runtime custom 1.0":                `runtime:\s*\{\s*name:\s*'custom'\s*version:\s*'1.0'\s*\}`,
		"keyVaultReferenceIdentity":         `keyVaultReferenceIdentity:\s*identity.id\b`,
		"user-assigned identity":            `type:\s*'UserAssigned'`,
		"maximumInstanceCount parameter":    `maximumInstanceCount:\s*maximumInstanceCount\b`,
		"identity-based deployment storage": `type:\s*'UserAssignedIdentity'\s*userAssignedIdentityResourceId:\s*identity.id`,
		"blob container deployment":         `type:\s*'blobContainer'`,
	} {
		if !regexp.MustCompile(re).MatchString(body) {
			t.Errorf("the app lacks %s (%s)", what, re)
		}
	}
	if !regexp.MustCompile(`param maximumInstanceCount int = \d+`).MatchString(main) {
		t.Error("maximumInstanceCount has no default")
	}
	for _, p := range []string{"dataverseUrl", "enrichmentUrl", "enrichmentKeySecretUri"} {
		if !regexp.MustCompile(`param ` + p + ` string\n`).MatchString(main) {
			t.Errorf("parameter %s missing (or has a default)", p)
		}
		if !strings.Contains(files["main.bicepparam"], "param "+p+" = ") {
			t.Errorf("main.bicepparam gives no example for %s", p)
		}
	}
}

func TestReaderSeesThroughComments(t *testing.T) {
	src := StripComments("// resource fake 'A/b@1' = {\n/* resource x 'A/c@1' = {} */\nresource real 'A/d@2' = {\n  p: 'it\\'s // not a comment'\n  q: { r: 1 }\n}\n")
	res, err := Resources(src)
	if err != nil || len(res) != 1 || res[0].Symbol != "real" || res[0].APIVersion != "2" {
		t.Fatalf("resources %+v, %v", res, err)
	}
	p, err := Properties(res[0].Body)
	if err != nil || p["q"] != "{ r: 1 }" || !strings.Contains(p["p"], "// not a comment") {
		t.Fatalf("properties %q, %v", p, err)
	}
}

// TestDataverseSetupScript: the script parses, and asks for the table privileges, the probe's reads
// and the bypass privilege only on request - nothing broader (no System Administrator).
func TestDataverseSetupScript(t *testing.T) {
	data, err := os.ReadFile("dataverse-setup.sh")
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for _, want := range []string{`"prvRead$TABLE" "prvWrite$TABLE" prvReadSdkMessage)`, `[[ "${BYPASS:-0}" == 1 ]] && privileges+=(prvBypassCustomBusinessLogic)`, `\"Depth\":\"Global\"`} {
		if !strings.Contains(s, want) {
			t.Errorf("dataverse-setup.sh lacks %s", want)
		}
	}
	if strings.Contains(s, "System Administrator\"") || strings.Contains(s, "prvBypassCustomPlugins") {
		t.Error("dataverse-setup.sh grants more than the job needs")
	}
	if _, err := exec.LookPath("bash"); err == nil {
		if out, err := exec.Command("bash", "-n", "dataverse-setup.sh").CombinedOutput(); err != nil {
			t.Errorf("bash -n: %v\n%s", err, out)
		}
	}
}
