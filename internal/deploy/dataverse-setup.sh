#!/usr/bin/env bash
# Creates the Dataverse side of a dvbulk deployment with Web API calls: a least-privilege security
# role and an application user for the Function App's user-assigned managed identity, holding only
# that role. Run it as a Dataverse System Administrator signed in with `az login`.
#
#   DATAVERSE_URL=https://contoso.crm.dynamics.com CLIENT_ID=<identity client id> \
#     internal/deploy/dataverse-setup.sh
#
# Optional: ROLE_NAME (default "dvbulk job"), TABLE (default Account: the nightly job's table, as the
# privilege names spell it), BYPASS=1 adds prvBypassCustomBusinessLogic (only for a job with
# write.bypassBusinessLogic). See the README (Deployment, Dataverse) for which calls were verified
# against Microsoft's documentation.
set -euo pipefail

: "${DATAVERSE_URL:?set DATAVERSE_URL to the environment root, e.g. https://contoso.crm.dynamics.com}"
: "${CLIENT_ID:?set CLIENT_ID to the managed identity client id (output identityClientId of main.bicep)}"
ROLE_NAME=${ROLE_NAME:-dvbulk job}
TABLE=${TABLE:-Account}
api="${DATAVERSE_URL%/}/api/data/v9.2"
token=$(az account get-access-token --resource "${DATAVERSE_URL%/}/" --query accessToken -o tsv)

dv() { # dv METHOD PATH [JSON]: one Web API call; fails on a non-2xx answer, prints the body.
  local method=$1 path=$2 body=${3:-}
  curl -sS --fail-with-body -X "$method" "$api/$path" \
    -H "Authorization: Bearer $token" -H "Accept: application/json" -H "OData-Version: 4.0" \
    -H "Content-Type: application/json" -H "Prefer: return=representation" ${body:+--data "$body"}
}
one() { # one JSONPATH: the single value of a query's answer, or fail.
  python3 -c 'import json,sys; v=json.load(sys.stdin)["value"]; sys.exit("expected one result, got %d" % len(v)) if len(v)!=1 else print(v[0][sys.argv[1]])' "$1"
}

bu=$(dv GET "businessunits?\$select=businessunitid&\$filter=_parentbusinessunitid_value%20eq%20null" | one businessunitid)

privileges=("prvRead$TABLE" "prvWrite$TABLE" prvReadSdkMessage)
[[ "${BYPASS:-0}" == 1 ]] && privileges+=(prvBypassCustomBusinessLogic)

role=$(dv GET "roles?\$select=roleid&\$filter=name%20eq%20'${ROLE_NAME// /%20}'%20and%20_businessunitid_value%20eq%20$bu" |
  python3 -c 'import json,sys; v=json.load(sys.stdin)["value"]; print(v[0]["roleid"] if v else "")')
if [[ -z "$role" ]]; then
  role=$(dv POST roles "{\"name\":\"$ROLE_NAME\",\"businessunitid@odata.bind\":\"/businessunits($bu)\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["roleid"])')
fi

entries=()
for p in "${privileges[@]}"; do
  id=$(dv GET "privileges?\$select=privilegeid&\$filter=name%20eq%20'$p'" | one privilegeid) ||
    { echo "privilege $p not found in this environment" >&2; exit 1; }
  entries+=("{\"PrivilegeId\":\"$id\",\"BusinessUnitId\":\"$bu\",\"Depth\":\"Global\"}")
done
dv POST "roles($role)/Microsoft.Dynamics.CRM.AddPrivilegesRole" "{\"Privileges\":[$(IFS=,; echo "${entries[*]}")]}" >/dev/null

user=$(dv GET "systemusers?\$select=systemuserid&\$filter=applicationid%20eq%20$CLIENT_ID" |
  python3 -c 'import json,sys; v=json.load(sys.stdin)["value"]; print(v[0]["systemuserid"] if v else "")')
if [[ -z "$user" ]]; then
  user=$(dv POST systemusers "{\"applicationid\":\"$CLIENT_ID\",\"businessunitid@odata.bind\":\"/businessunits($bu)\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["systemuserid"])')
fi
dv POST "systemusers($user)/systemuserroles_association/\$ref" "{\"@odata.id\":\"$api/roles($role)\"}" >/dev/null

echo "application user $user (client id $CLIENT_ID) holds role \"$ROLE_NAME\" ($role): ${privileges[*]} at organization depth"
