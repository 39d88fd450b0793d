package chddl

import (
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
)

func TestSplit(t *testing.T) {
	t.Parallel()
	got, err := Split(`
-- a comment; with a semicolon
CREATE TABLE a (x String DEFAULT 'it''s; -- not a comment') ENGINE = Memory;
/* block; comment */ SELECT "q;uoted", ` + "`b;t`" + ` FROM a -- trailing; comment
;;
SELECT 'back\'slash;'
`)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`CREATE TABLE a (x String DEFAULT 'it''s; -- not a comment') ENGINE = Memory`,
		"SELECT \"q;uoted\", `b;t` FROM a",
		`SELECT 'back\'slash;'`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Split:\n got %q\nwant %q", got, want)
	}
	for _, bad := range []string{"SELECT 'open", "SELECT 1 /* open"} {
		if _, err := Split(bad); err == nil {
			t.Errorf("Split(%q): no error", bad)
		}
	}
}

func TestEmbeddedMigrations(t *testing.T) {
	t.Parallel()
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		t.Fatal("no embedded migrations")
	}
	for i, m := range ms {
		if m.Version != uint32(i+1) {
			t.Errorf("migration %d is %s: versions must be 1, 2, 3, ... without gaps", i, m.File)
		}
		for _, s := range m.Statements {
			up := strings.ToUpper(s)
			if strings.HasPrefix(up, "CREATE") && !strings.Contains(up, "IF NOT EXISTS") {
				t.Errorf("%s: a CREATE without IF NOT EXISTS cannot be repeated: %.60s", m.File, s)
			}
			for _, lacking := range []string{"DATETIME64", "CODEC(", " TTL ", "LOWCARDINALITY", " OVER (", "NULLABLE("} {
				if strings.Contains(up, lacking) {
					t.Errorf("%s uses %s, which ClickHouse 18.16 lacks", m.File, strings.TrimSpace(lacking))
				}
			}
		}
	}
}

func TestLoadRefusesBadFiles(t *testing.T) {
	t.Parallel()
	cases := map[string]fstest.MapFS{
		"bad name":   {"1_x.sql": {Data: []byte("SELECT 1")}},
		"duplicate":  {"001_a.sql": {Data: []byte("SELECT 1")}, "0001_b.sql": {Data: []byte("SELECT 1")}},
		"zero":       {"000_a.sql": {Data: []byte("SELECT 1")}},
		"empty file": {"001_a.sql": {Data: []byte("-- nothing\n")}},
	}
	for name, fsys := range cases {
		if _, err := load(fsys); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
