// Package importfile decodes the files an import job reads (RFC 4180 CSV and NDJSON) into
// records and maps their columns onto Dataverse columns by declared type.
//
// Decoding streams: a record is held only until the next one is read, so a file of any size is
// read in bounded memory. Every record carries its record number, the line it starts on and the
// byte range it occupies in the file as stored (before any transcoding), so a planner can cut a
// file into chunks at record boundaries and a chunk can be decoded on its own from its offset.
//
// A record that cannot be decoded (a stray quote, a wrong number of fields, a line that is not a
// JSON object) is returned with Err set and the decoder carries on with the next record: one bad
// row never fails the file. What makes the rest of the file unreadable (invalid UTF-8, an
// unterminated quoted field, a bad header) is returned as the decoder's error instead.
package importfile
