// Package schemas holds Causeway's versioned record schemas: the protobuf
// sources under proto/, the generated Go code in causewaypb, and the
// version every writer stamps on its records.
//
// Everything here is immutable and safe for concurrent use.
package schemas

// Version is the schema version this build writes. Readers accept records
// of any version: fields they do not know are ignored, and a record whose
// kind they do not know is counted and skipped.
const Version uint32 = 1
