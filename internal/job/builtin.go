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
}
