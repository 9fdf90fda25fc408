package job

// builtins are the jobs shipped in the binary. Operators add their own as JSON files with the same
// shape (see the README), selected by DVBULK_JOB=/path/to/job.json.
var builtins = map[string]string{
	// The nightly enrichment sync (README, "Jobs").
	"nightly-enrichment": `{
  "name": "nightly-enrichment",
  "description": "Ask the company-data service about every active account and write back what changed.",
  "table": {"entitySet": "accounts", "logicalName": "account", "key": "accountid"},
  "filter": "statecode eq 0",
  "columns": {"accountid": "guid", "name": "string", "websiteurl": "string",
              "numberofemployees": "int", "revenue": "decimal", "industrycode": "int", "description": "string"},
  "input": ["name", "websiteurl"],
  "writable": ["numberofemployees", "revenue", "industrycode", "description"],
  "transform": {"kind": "enrich"},
  "write": {"mode": "bulk", "batchSize": 100, "concurrency": "none"}
}`,
	// A mass recalculation: the account tier is recomputed from the record's own values.
	"recalculate-tier": `{
  "name": "recalculate-tier",
  "description": "Recompute every active account's tier label from its revenue and head count.",
  "table": {"entitySet": "accounts", "logicalName": "account", "key": "accountid"},
  "filter": "statecode eq 0",
  "columns": {"accountid": "guid", "numberofemployees": "int", "revenue": "decimal", "description": "string"},
  "input": ["numberofemployees", "revenue"],
  "writable": ["description"],
  "transform": {"kind": "recalculate", "set": {
    "description": "(revenue ?? 0) >= 1000000 ? \"Tier A\" : ((numberofemployees ?? 0) >= 100 ? \"Tier B\" : \"Tier C\")"
  }},
  "write": {"mode": "bulk", "batchSize": 200, "concurrency": "etag"}
}`,
	// The migration of the seed: contacts exported from a legacy CRM, created once each. The legacy
	// id is an alternate key (dvb_legacyid_key on a custom column), so rows repeated in the file are
	// reported and a later upsert run can address the same records.
	"import-contacts": `{
  "name": "import-contacts",
  "description": "Create contacts from a legacy CRM export (CSV or NDJSON) dropped under the import prefix.",
  "table": {"entitySet": "contacts", "logicalName": "contact", "key": "contactid"},
  "transform": {"kind": "import"},
  "write": {"mode": "bulk", "batchSize": 100},
  "import": {
    "mode": "create",
    "key": ["dvb_legacyid"],
    "mapping": {"columns": [
      {"source": "legacy_id", "target": "dvb_legacyid", "type": "string", "required": true, "maxLength": 100},
      {"source": "first_name", "target": "firstname", "type": "string", "maxLength": 50},
      {"source": "last_name", "target": "lastname", "type": "string", "required": true, "maxLength": 50},
      {"source": "email", "target": "emailaddress1", "type": "string", "maxLength": 100},
      {"source": "phone", "target": "telephone1", "type": "string", "maxLength": 50},
      {"source": "city", "target": "address1_city", "type": "string", "maxLength": 80},
      {"source": "birthdate", "target": "birthdate", "type": "date"},
      {"source": "children", "target": "numberofchildren", "type": "int"},
      {"source": "credit_limit", "target": "creditlimit", "type": "decimal"},
      {"source": "do_not_email", "target": "donotemail", "type": "bool"},
      {"source": "role", "target": "accountrolecode", "type": "optionset", "options": {"Decision Maker": 1, "Employee": 2, "Influencer": 3}},
      {"source": "account_number", "target": "parentcustomerid_account", "type": "lookup", "table": "accounts", "key": "accountnumber"},
      {"source": "notes", "target": "description", "type": "string", "maxLength": 2000}
    ]}
  }
}`,
}
