package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Role is a built-in role the templates must assign, with the resource type it is assigned on.
type Role struct {
	Name, ID, ScopeType string
}

// Roles are exactly the role assignments the app's identity needs. The ids are the built-in role
// definition ids of Microsoft's "Azure built-in roles" page.
var Roles = []Role{
	{"Storage Blob Data Owner", "b7e6dc6d-f1e8-4753-8033-0f276bb0955b", "Microsoft.Storage/storageAccounts"},
	{"Storage Queue Data Contributor", "974c5e8b-45b9-4653-ba55-5f855dd0fb88", "Microsoft.Storage/storageAccounts"},
	{"Storage Queue Data Message Processor", "8a0f0c08-91a1-4084-bc3d-661d67233fed", "Microsoft.Storage/storageAccounts"},
	{"Monitoring Metrics Publisher", "3913510d-42f4-4e42-8a64-420c390055eb", "Microsoft.Insights/components"},
	{"Key Vault Secrets User", "4633458b-17de-408a-b874-0445c86b69e6", "Microsoft.KeyVault/vaults"},
}

// LoadDir reads every .bicep and .bicepparam file of dir, comments stripped, by file name.
func LoadDir(dir string) (map[string]string, error) {
	out := map[string]string{}
	for _, pat := range []string{"*.bicep", "*.bicepparam"} {
		names, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			b, err := os.ReadFile(n)
			if err != nil {
				return nil, err
			}
			out[filepath.Base(n)] = StripComments(string(b))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no Bicep files in %s", dir)
	}
	return out, nil
}

var (
	guidRe     = regexp.MustCompile(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)
	roleDefRef = regexp.MustCompile(`roleDefinitions`)
)

// CheckRoles reports every role assignment that is not one of Roles on its scope type, every one
// of Roles that is missing or assigned twice, and any way of assigning a role the reader cannot
// see (registry modules, role definitions outside a role assignment).
func CheckRoles(files map[string]string) []error {
	var errs []error
	want := map[string]Role{}
	for _, r := range Roles {
		want[r.ID] = r
	}
	seen := map[string]int{}
	for _, name := range sortedKeys(files) {
		src := files[name]
		if strings.Contains(src, "'br/") || strings.Contains(src, "'br:") || strings.Contains(src, "'ts:") {
			errs = append(errs, fmt.Errorf("%s: uses a registry module, whose role assignments this check cannot see", name))
		}
		res, err := Resources(src)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		types := map[string]string{}
		for _, r := range res {
			types[r.Symbol] = r.Type
		}
		inAssignments := 0
		for _, r := range res {
			if r.Type == "Microsoft.Authorization/roleDefinitions" {
				errs = append(errs, fmt.Errorf("%s: resource %s declares a role definition; only built-in roles are assigned", name, r.Symbol))
			}
			if r.Type != "Microsoft.Authorization/roleAssignments" {
				continue
			}
			inAssignments += len(roleDefRef.FindAllString(r.Body, -1))
			props, err := Properties(r.Body)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %s: %w", name, r.Symbol, err))
				continue
			}
			inner, _ := Properties(strings.Trim(props["properties"], "{}"))
			ids := guidRe.FindAllString(inner["roleDefinitionId"], -1)
			if len(ids) != 1 {
				errs = append(errs, fmt.Errorf("%s: role assignment %s: roleDefinitionId %q does not name one built-in role id", name, r.Symbol, inner["roleDefinitionId"]))
				continue
			}
			id := strings.ToLower(ids[0])
			role, ok := want[id]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: role assignment %s assigns role %s, which is not one the app needs", name, r.Symbol, id))
				continue
			}
			if scope := types[strings.TrimSpace(props["scope"])]; scope != role.ScopeType {
				errs = append(errs, fmt.Errorf("%s: role assignment %s (%s) is scoped to %q (%s), want a %s", name, r.Symbol, role.Name, props["scope"], scope, role.ScopeType))
			}
			seen[id]++
		}
		if total := len(roleDefRef.FindAllString(src, -1)); total != inAssignments {
			errs = append(errs, fmt.Errorf("%s: %d role definition references outside a role assignment", name, total-inAssignments))
		}
	}
	for _, r := range Roles {
		switch n := seen[r.ID]; {
		case n == 0:
			errs = append(errs, fmt.Errorf("role %s (%s) is not assigned", r.Name, r.ID))
		case n > 1:
			errs = append(errs, fmt.Errorf("role %s (%s) is assigned %d times", r.Name, r.ID, n))
		}
	}
	return errs
}

// secretLike matches text that is, or carries, a credential.
var secretLike = regexp.MustCompile(`(?i)AccountKey=|SharedAccessSignature|[?&]sig=|client_?secret|AZURE_CLIENT_SECRET|-----BEGIN|Bearer\s+\S|listKeys\(|listAccountSas\(|listServiceSas\(|'[A-Za-z0-9+/]{40,}={0,2}'`)

// CheckNoSecrets reports every credential-like text, every @secure() parameter with a default
// and an ENRICHMENT_API_KEY that is not a Key Vault reference.
func CheckNoSecrets(files map[string]string, settings map[string]string) []error {
	var errs []error
	secureDefault := regexp.MustCompile(`@secure\(\)\s*param\s+\w+\s+\w+\s*=`)
	for _, name := range sortedKeys(files) {
		src := files[name]
		if m := secretLike.FindString(src); m != "" {
			errs = append(errs, fmt.Errorf("%s: contains credential-like text %q", name, m))
		}
		if secureDefault.MatchString(src) {
			errs = append(errs, fmt.Errorf("%s: a @secure() parameter has a default value", name))
		}
	}
	if v, ok := settings["ENRICHMENT_API_KEY"]; ok && !strings.HasPrefix(strings.TrimSpace(v), "'@Microsoft.KeyVault(SecretUri=") {
		errs = append(errs, fmt.Errorf("ENRICHMENT_API_KEY is %s, want a Key Vault reference '@Microsoft.KeyVault(SecretUri=...)'", v))
	}
	return errs
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
