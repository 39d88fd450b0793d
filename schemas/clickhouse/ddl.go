// Package chddl holds Causeway's ClickHouse schema: versioned DDL
// migrations, NNN_name.sql in this folder, embedded into the binary.
// `causeway migrate` applies them in version order (consumers/rollup/chsink
// runs them); docs/analytics.md describes the tables.
//
// Rules for a migration file, so that applying it is safe to repeat (a run
// that failed half way is simply run again) and valid on ClickHouse 18.16
// (Debian's) as well as current releases:
//
//   - every statement is idempotent: CREATE ... IF NOT EXISTS, or an
//     INSERT into a table that deduplicates (uniqExact states,
//     ReplacingMergeTree keys);
//   - table names are unqualified: they resolve to the database being
//     migrated (clickhouse.database);
//   - no syntax 18.16 lacks (DateTime64, CODEC, TTL, LowCardinality,
//     window functions, WITH subqueries) and no legacy MergeTree syntax
//     that current releases refuse;
//   - an applied file is never edited: its checksum is recorded and a
//     change is refused. Add a new version instead.
//
// Everything here is immutable and safe for concurrent use.
package chddl

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

//go:embed *.sql
var files embed.FS

// Migration is one versioned DDL file.
type Migration struct {
	Version    uint32
	Name       string   // the file name without version and extension
	File       string   // NNN_name.sql
	Statements []string // in file order, without the trailing ';'
	Checksum   string   // hex SHA-256 of the file
}

var fileName = regexp.MustCompile(`^([0-9]{3,})_([a-z0-9_]+)\.sql$`)

// Migrations returns the embedded migrations in version order.
func Migrations() ([]Migration, error) {
	return load(files)
}

func load(fsys fs.FS) ([]Migration, error) {
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	var out []Migration
	seen := map[uint32]string{}
	for _, name := range names {
		m := fileName.FindStringSubmatch(path.Base(name))
		if m == nil {
			return nil, fmt.Errorf("migration file %s: want NNN_name.sql (digits, underscore, lower-case name)", name)
		}
		v, err := strconv.ParseUint(m[1], 10, 32)
		if err != nil || v == 0 {
			return nil, fmt.Errorf("migration file %s: version must be a number from 1", name)
		}
		if prev, ok := seen[uint32(v)]; ok {
			return nil, fmt.Errorf("migration files %s and %s have the same version %d", prev, name, v)
		}
		seen[uint32(v)] = name
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", name, err)
		}
		stmts, err := Split(string(b))
		if err != nil {
			return nil, fmt.Errorf("migration %s: %w", name, err)
		}
		if len(stmts) == 0 {
			return nil, fmt.Errorf("migration %s: no statements", name)
		}
		sum := sha256.Sum256(b)
		out = append(out, Migration{Version: uint32(v), Name: m[2], File: name, Statements: stmts, Checksum: hex.EncodeToString(sum[:])})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// Split cuts a SQL script into statements at each ';' outside quotes and
// comments ('...', "...", `...`, -- to end of line, /* ... */). Comments
// are dropped; empty statements are skipped. The native protocol runs one
// statement per query.
func Split(script string) ([]string, error) {
	var (
		stmts []string
		cur   strings.Builder
	)
	flush := func() {
		if s := strings.TrimSpace(cur.String()); s != "" {
			stmts = append(stmts, s)
		}
		cur.Reset()
	}
	for i := 0; i < len(script); i++ {
		c := script[i]
		switch {
		case c == '-' && i+1 < len(script) && script[i+1] == '-':
			for i < len(script) && script[i] != '\n' {
				i++
			}
			cur.WriteByte('\n')
		case c == '/' && i+1 < len(script) && script[i+1] == '*':
			end := strings.Index(script[i+2:], "*/")
			if end < 0 {
				return nil, fmt.Errorf("unterminated /* comment at byte %d", i)
			}
			i += 2 + end + 1
			cur.WriteByte(' ')
		case c == '\'' || c == '"' || c == '`':
			j := i + 1
			for ; j < len(script); j++ {
				if script[j] == '\\' {
					j++
					continue
				}
				if script[j] == c {
					break
				}
			}
			if j >= len(script) {
				return nil, fmt.Errorf("unterminated %c quote at byte %d", c, i)
			}
			cur.WriteString(script[i : j+1])
			i = j
		case c == ';':
			flush()
		default:
			cur.WriteByte(c)
		}
	}
	flush()
	return stmts, nil
}
