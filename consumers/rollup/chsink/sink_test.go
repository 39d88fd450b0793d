package chsink

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/causeway/causeway/consumers/rollup"
	"github.com/causeway/causeway/consumers/rollup/chsink/chtest"
	chddl "github.com/causeway/causeway/schemas/clickhouse"
)

func migrated(t *testing.T) (Config, *Sink) {
	t.Helper()
	cfg := Config{Addr: chAddr, Database: testDatabase(t)}
	if _, err := Migrate(t.Context(), cfg); err != nil {
		t.Fatalf("Migrate(%s): %v", cfg.Database, err)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return cfg, s
}

// TestMigrateFreshTwice: a fresh database gets every migration in order
// and every table; a second run applies nothing and changes nothing.
func TestMigrateFreshTwice(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	cfg := Config{Addr: chAddr, Database: testDatabase(t)}
	all, err := chddl.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	res, err := Migrate(ctx, cfg)
	if err != nil {
		t.Fatalf("first Migrate: %v", err)
	}
	if len(res.Applied) != len(all) || res.Version != all[len(all)-1].Version {
		t.Fatalf("first Migrate applied %d migrations up to version %d, want all %d up to %d", len(res.Applied), res.Version, len(all), all[len(all)-1].Version)
	}
	for i, m := range res.Applied {
		if m.Version != all[i].Version {
			t.Errorf("applied #%d is version %d, want %d (in order)", i, m.Version, all[i].Version)
		}
	}

	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping after Migrate: %v", err)
	}
	tables := func() [][]string {
		return query(t, s.conn, "SELECT name, engine FROM system.tables WHERE database = '"+cfg.Database+"' ORDER BY name")
	}
	wantTables := [][]string{
		{"activity_from_members", "MaterializedView"},
		{"activity_from_messages", "MaterializedView"},
		{"activity_from_reads", "MaterializedView"},
		{"activity_minute_state", "AggregatingMergeTree"},
		{"activity_per_minute", "View"},
		{"member_events", "ReplacingMergeTree"},
		{"messages", "ReplacingMergeTree"},
		{"presence_events", "ReplacingMergeTree"},
		{"reads", "ReplacingMergeTree"},
		{"receipts", "ReplacingMergeTree"},
		{"schema_migrations", "ReplacingMergeTree"},
	}
	before := tables()
	if !reflect.DeepEqual(before, wantTables) {
		t.Fatalf("tables after Migrate:\n got %v\nwant %v", before, wantTables)
	}
	recorded := query(t, s.conn, "SELECT count(), uniqExact(version) FROM schema_migrations")

	res, err = Migrate(ctx, cfg)
	if err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	if len(res.Applied) != 0 || res.Version != all[len(all)-1].Version {
		t.Fatalf("second Migrate applied %d migrations (version %d), want none (version %d)", len(res.Applied), res.Version, all[len(all)-1].Version)
	}
	if got := tables(); !reflect.DeepEqual(got, before) {
		t.Errorf("tables changed by the second Migrate:\n got %v\nwant %v", got, before)
	}
	if got := query(t, s.conn, "SELECT count(), uniqExact(version) FROM schema_migrations"); !reflect.DeepEqual(got, recorded) {
		t.Errorf("schema_migrations (rows, versions) after the second Migrate = %v, want %v (nothing recorded again)", got, recorded)
	}
}

// TestMigrateRefusesUnknown: a version this binary does not have, or an
// applied file that changed, stops Migrate with ErrUnknownMigration and a
// message naming it; nothing is applied.
func TestMigrateRefusesUnknown(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	cfg, s := migrated(t)

	if err := record(ctx, s.conn, chddl.Migration{Version: 999, Name: "from_the_future", Checksum: "x"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	_, err := Migrate(ctx, cfg)
	if !errors.Is(err, ErrUnknownMigration) || !strings.Contains(err.Error(), "999 (from_the_future)") || !strings.Contains(err.Error(), "newer causeway") {
		t.Fatalf("Migrate with version 999 in the database = %v, want ErrUnknownMigration naming 999 (from_the_future) and a newer causeway", err)
	}

	cfg2, s2 := migrated(t)
	// A later applied_at: this row is the latest for version 1.
	if err := record(ctx, s2.conn, chddl.Migration{Version: 1, Name: "timeline", Checksum: "edited"}, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	_, err = Migrate(ctx, cfg2)
	if !errors.Is(err, ErrUnknownMigration) || !strings.Contains(err.Error(), "must never change") {
		t.Fatalf("Migrate with a changed checksum for version 1 = %v, want ErrUnknownMigration saying applied migrations must never change", err)
	}
}

// TestMigrateResumesPartialRun: a run that died after some statements of
// a migration (not recorded) is completed by the next run.
func TestMigrateResumesPartialRun(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	cfg, s := migrated(t)
	all, _ := chddl.Migrations()
	last := all[len(all)-1]
	// Forget the last migration and drop what its last statement made, as
	// if the process had died before finishing it.
	mustExec(t, s.conn, fmt.Sprintf("ALTER TABLE schema_migrations DELETE WHERE version = %d", last.Version))
	waitFor(t, func() bool {
		return query(t, s.conn, fmt.Sprintf("SELECT count() FROM schema_migrations WHERE version = %d", last.Version))[0][0] == "0"
	})
	mustExec(t, s.conn, "DROP TABLE activity_per_minute")
	res, err := Migrate(ctx, cfg)
	if err != nil {
		t.Fatalf("Migrate after a partial run: %v", err)
	}
	if len(res.Applied) != 1 || res.Applied[0].Version != last.Version {
		t.Fatalf("Migrate after a partial run applied %v, want only version %d", res.Applied, last.Version)
	}
	query(t, s.conn, "SELECT count() FROM activity_per_minute")
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, c := range []Config{
		{},
		{Addr: "no-port"},
		{Addr: ":9000"},
		{Addr: "127.0.0.1:99999"},
		{Addr: "127.0.0.1:9000", Database: "bad-name"},
		{Addr: "127.0.0.1:9000", Database: "1abc"},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v): no error", c)
		}
	}
	s, err := New(Config{Addr: "127.0.0.1:9000"})
	if err != nil {
		t.Fatalf("New with only an address: %v", err)
	}
	s.Close()
}

// TestAuthAndErrors: a user with a password (scripts/clickhouse.sh makes
// "causeway"); a wrong password, a server that is down and missing tables
// are errors that say what was being done.
func TestAuthAndErrors(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	if chtest.Local() {
		pw := os.Getenv("CAUSEWAY_CH_PASSWORD")
		if pw == "" {
			pw = "causeway-dev"
		}
		good, err := New(Config{Addr: chAddr, Database: "system", Username: "causeway", Password: pw})
		if err != nil {
			t.Fatal(err)
		}
		defer good.Close()
		if err := good.Ping(ctx); err != nil {
			t.Errorf("Ping as causeway with its password: %v", err)
		}
		bad, _ := New(Config{Addr: chAddr, Database: "system", Username: "causeway", Password: "wrong"})
		defer bad.Close()
		if err := bad.Ping(ctx); err == nil || !strings.Contains(err.Error(), "ping clickhouse") {
			t.Errorf("Ping with a wrong password = %v, want an error", err)
		}
	}

	down, _ := New(Config{Addr: "127.0.0.1:1", DialTimeout: time.Second})
	defer down.Close()
	if err := down.Ping(ctx); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("Ping of a closed port = %v, want an error naming the address", err)
	}

	db := testDatabase(t)
	nomig, _ := New(Config{Addr: chAddr, Database: "default"})
	defer nomig.Close()
	mustExec(t, nomig.conn, "CREATE DATABASE `"+db+"`")
	empty, _ := New(Config{Addr: chAddr, Database: db})
	defer empty.Close()
	err := empty.Write(ctx, rollup.Batch{Messages: []rollup.MessageRow{{Group: "g", Seq: 1}}})
	if err == nil || !strings.Contains(err.Error(), "insert 1 rows into clickhouse "+db+".messages") {
		t.Errorf("Write without tables = %v, want an error naming the insert", err)
	}
	if err := empty.Write(ctx, rollup.Batch{}); err != nil {
		t.Errorf("Write of an empty batch: %v", err)
	}
}

// TestTLS: the project-local server's TLS port, verified with its
// certificate: migrate, write and read back; without that certificate
// (the system's roots) the handshake is refused.
func TestTLS(t *testing.T) {
	t.Parallel()
	if !chtest.Local() {
		t.Log("TLS is checked against the project-local server only")
		return
	}
	ctx := t.Context()
	addr, caFile, err := chtest.LocalTLS()
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", caFile)
	}
	cfg := Config{Addr: addr, Database: testDatabase(t), TLS: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}}
	if _, err := Migrate(ctx, cfg); err != nil {
		t.Fatalf("Migrate over TLS: %v", err)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	first, _ := fixture()
	if err := s.Write(ctx, first); err != nil {
		t.Fatalf("Write over TLS: %v", err)
	}
	if got := query(t, s.conn, "SELECT count() FROM messages"); got[0][0] != "4" {
		t.Errorf("messages over TLS = %v, want 4", got)
	}

	untrusted, _ := New(Config{Addr: addr, Database: "system", TLS: &tls.Config{ServerName: "127.0.0.1"}})
	defer untrusted.Close()
	if err := untrusted.Ping(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Ping over TLS without the server's CA = %v, want a certificate error", err)
	}
}

// TestQueriesExactUnderReplay writes known rows in two batches, runs every
// query of docs/analytics.md and checks the exact result; then writes both
// batches again in the other order (a replay, with older receipt
// versions and presence online events arriving after newer ones) and checks the same
// results; then merges every table (OPTIMIZE FINAL) and checks again.
func TestQueriesExactUnderReplay(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	_, s := migrated(t)
	first, second := fixture()

	check := func(stage string) {
		t.Helper()
		for _, q := range Queries {
			want, ok := expected[q.Name]
			if !ok {
				t.Fatalf("no expected result for query %s", q.Name)
			}
			got := query(t, s.conn, q.SQL)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s: query %s:\n got %s\nwant %s", stage, q.Name, table(got), table(want))
			}
		}
	}
	rawRows := func() []string {
		var out []string
		for _, tb := range []string{"messages", "reads", "member_events", "receipts", "presence_events"} {
			out = append(out, tb+"="+query(t, s.conn, "SELECT count() FROM "+tb)[0][0])
		}
		return out
	}

	for _, b := range []rollup.Batch{first, second} {
		if err := s.Write(ctx, b); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	check("after one write")
	once := rawRows()

	for _, b := range []rollup.Batch{second, first} {
		if err := s.Write(ctx, b); err != nil {
			t.Fatalf("Write (replay): %v", err)
		}
	}
	twice := rawRows()
	if reflect.DeepEqual(once, twice) {
		t.Fatalf("raw row counts did not change on replay (%v): the replay test would prove nothing", once)
	}
	t.Logf("raw rows after one write %v, after the replay %v", once, twice)
	check("after the replay")

	for _, tb := range []string{"messages", "reads", "member_events", "receipts", "presence_events", "activity_minute_state"} {
		mustExec(t, s.conn, "OPTIMIZE TABLE "+tb+" FINAL")
	}
	check("after OPTIMIZE FINAL")

	// Merged, every presence event is one row, in the partition of its
	// own time (gina's session spans two): duplicates never straddle
	// partitions.
	events := map[presenceEvent]bool{}
	for _, b := range []rollup.Batch{first, second} {
		for _, e := range presenceEvents(b.Presence) {
			events[e] = true
		}
	}
	if got, want := query(t, s.conn, "SELECT count() FROM presence_events")[0][0], strconv.Itoa(len(events)); got != want {
		t.Errorf("presence_events after OPTIMIZE FINAL has %s rows, want %s (one per distinct event)", got, want)
	}
	wantParts := [][]string{{"gina", "0", "202403"}, {"gina", "1", "202402"}}
	if got := query(t, s.conn, "SELECT user_id, online, toString(toYYYYMM(at)) FROM presence_events WHERE user_id = 'gina' ORDER BY online"); !reflect.DeepEqual(got, wantParts) {
		t.Errorf("gina's events (online, month) = %v, want %v", got, wantParts)
	}
}

// TestDocQuotesEveryQuery: docs/analytics.md shows each query verbatim,
// so what analysts copy is what CI runs.
func TestDocQuotesEveryQuery(t *testing.T) {
	t.Parallel()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(root + "/docs/analytics.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	names := map[string]bool{}
	for _, q := range Queries {
		if names[q.Name] {
			t.Errorf("two queries named %s", q.Name)
		}
		names[q.Name] = true
		if !strings.Contains(doc, "```sql\n"+q.SQL+"\n```") {
			t.Errorf("docs/analytics.md lacks query %s (%q) verbatim in a ```sql block", q.Name, q.Title)
		}
		if !strings.Contains(doc, "`"+q.Name+"`") {
			t.Errorf("docs/analytics.md does not name query %s", q.Name)
		}
	}
	if len(Queries) < 6 {
		t.Errorf("%d queries, want at least 6", len(Queries))
	}
}

// query runs sql and returns its rows as strings (times as UTC
// "2006-01-02 15:04:05", floats in their shortest form).
func query(t *testing.T, conn driver.Conn, sql string) [][]string {
	t.Helper()
	rows, err := conn.Query(t.Context(), sql)
	if err != nil {
		t.Fatalf("query %.80q: %v", sql, err)
	}
	defer rows.Close()
	types := rows.ColumnTypes()
	var out [][]string
	for rows.Next() {
		dest := make([]any, len(types))
		for i, ct := range types {
			dest[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatalf("scan %.80q: %v", sql, err)
		}
		row := make([]string, len(dest))
		for i, d := range dest {
			switch v := reflect.ValueOf(d).Elem().Interface().(type) {
			case time.Time:
				row[i] = v.UTC().Format(time.DateTime)
			case float64:
				row[i] = strconv.FormatFloat(v, 'f', -1, 64)
			default:
				row[i] = fmt.Sprint(v)
			}
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("query %.80q: %v", sql, err)
	}
	return out
}

func mustExec(t *testing.T, conn driver.Conn, sql string) {
	t.Helper()
	if err := conn.Exec(t.Context(), sql); err != nil {
		t.Fatalf("%.80q: %v", sql, err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func table(rows [][]string) string {
	var b strings.Builder
	for _, r := range rows {
		b.WriteString("\n  " + strings.Join(r, " | "))
	}
	if len(rows) == 0 {
		b.WriteString("(no rows)")
	}
	return b.String()
}

// The fixture: three groups, two hours, every row kind. Times are offsets
// in seconds from t0.
//
//	g1 (3, then 4 members): alice, bob, carol join (seq 1-3); messages 4
//	   (alice), 5 (bob), 6 (alice); dave joins (7); message 8 (carol); bob
//	   leaves (9). Reads move watermarks: bob 4, carol 5, alice 5, bob 6,
//	   dave 8, carol 8, alice 8.
//	g2 (2 members, a 1:1): erin, frank join; messages 3 (erin), 4
//	   (frank), 5 (erin) an hour later; frank reads 3, erin reads 4;
//	   message 5 stays unread.
//	g3 (12 members u01-u12): messages 13-16 by u01 and u02; everyone
//	   reads up to 16 in the same instant.
//
// Presence: sessions on edges e1 and e2 (see the presence_session_lengths
// expectation), one across a month boundary, one attached twice, and two
// whose start predates the data (only an offline event).
var t0 = time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

func version(readCount, samples uint64) uint64 { return readCount<<32 | samples }

// fixture returns the rows as two batches, as the rollup would write them
// over time: the first has the early versions of receipts and the
// sessions going online, the second the later versions and most sessions
// going offline (a session's events in separate batches).
func fixture() (first, second rollup.Batch) {
	member := func(g string, seq uint64, u string, joined bool, s float64) rollup.MemberRow {
		return rollup.MemberRow{Group: g, Seq: seq, User: u, Joined: joined, At: at(s)}
	}
	msg := func(g string, seq uint64, sender string, s float64, n uint32) rollup.MessageRow {
		return rollup.MessageRow{Group: g, Seq: seq, Sender: sender, SentAt: at(s), MembersAtSend: n}
	}
	read := func(g, u string, w uint64, s float64) rollup.ReadRow {
		return rollup.ReadRow{Group: g, User: u, Watermark: w, ReadAt: at(s)}
	}
	receipt := func(m rollup.MessageRow, count uint32, firstRead, lastRead float64, ttr float64) rollup.ReceiptRow {
		r := rollup.ReceiptRow{Group: m.Group, Seq: m.Seq, Sender: m.Sender, SentAt: m.SentAt, MembersAtSend: m.MembersAtSend,
			ReadCount: count, TTRp50: ttr, TTRp90: ttr, TTRp99: ttr, Version: version(uint64(count), uint64(count))}
		if count > 0 {
			r.FirstReadAt, r.LastReadAt = at(firstRead), at(lastRead)
		}
		return r
	}
	// Presence rows as rollup.Sink makes them: an attachment record is an
	// online row (edge and time), a tombstone an offline row (time only).
	online := func(u, id, edge string, s float64) rollup.PresenceRow {
		return rollup.PresenceRow{User: u, Session: id, Edge: edge, OnlineAt: at(s), Version: uint64(at(s).UnixMilli())}
	}
	offline := func(u, id string, s float64) rollup.PresenceRow {
		return rollup.PresenceRow{User: u, Session: id, OfflineAt: at(s), Version: uint64(at(s).UnixMilli())}
	}

	g1 := []rollup.MessageRow{msg("g1", 4, "alice", 10, 3), msg("g1", 5, "bob", 20, 3), msg("g1", 6, "alice", 30, 3), msg("g1", 8, "carol", 50, 4)}
	g2 := []rollup.MessageRow{msg("g2", 3, "erin", 3700, 2), msg("g2", 4, "frank", 3710, 2), msg("g2", 5, "erin", 3720, 2)}
	g3 := []rollup.MessageRow{msg("g3", 13, "u01", 3600, 12), msg("g3", 14, "u02", 3610, 12), msg("g3", 15, "u01", 3620, 12), msg("g3", 16, "u02", 3630, 12)}

	first.Members = []rollup.MemberRow{
		member("g1", 1, "alice", true, 0), member("g1", 2, "bob", true, 1), member("g1", 3, "carol", true, 2), member("g1", 7, "dave", true, 40),
		member("g2", 1, "erin", true, 5), member("g2", 2, "frank", true, 6),
	}
	first.Messages = g1
	first.Reads = []rollup.ReadRow{
		read("g1", "bob", 4, 11), read("g1", "carol", 5, 22), read("g1", "alice", 5, 25), read("g1", "bob", 6, 35), read("g1", "dave", 8, 55),
	}
	first.Receipts = []rollup.ReceiptRow{
		receipt(g1[0], 1, 11, 11, 1000), receipt(g1[1], 1, 22, 22, 2000), receipt(g1[2], 1, 35, 35, 5000), receipt(g1[3], 1, 55, 55, 5000),
		receipt(g2[0], 0, 0, 0, 0), receipt(g3[0], 0, 0, 0, 0), receipt(g3[1], 0, 0, 0, 0),
	}
	first.Presence = []rollup.PresenceRow{
		online("alice", "s1", "e1", 0), online("bob", "s2", "e1", 10), online("carol", "s3", "e2", 0),
		online("dave", "s4", "e2", 40), online("erin", "s5", "e2", 3600), online("frank", "s6", "e1", 3600),
		// gina's session starts in February and ends in March: its two
		// events are in different partitions.
		online("gina", "s7", "e1", -36060),
		// ivan's session attaches on e2, then again on e1 (a new
		// attachment record of the same session): it began on e2 at 100.
		online("ivan", "s9", "e2", 100),
		// hank's session began before the data: only its end is here.
		offline("hank", "s8", 5),
	}

	second.Members = []rollup.MemberRow{member("g1", 9, "bob", false, 70)}
	for i := 1; i <= 12; i++ {
		second.Members = append(second.Members, member("g3", uint64(i), fmt.Sprintf("u%02d", i), true, 3500+float64(i-1)))
	}
	second.Messages = append(append([]rollup.MessageRow(nil), g2...), g3...)
	second.Reads = []rollup.ReadRow{
		read("g1", "carol", 8, 60), read("g1", "alice", 8, 65),
		read("g2", "frank", 3, 3701.5), read("g2", "erin", 4, 3740),
	}
	for i := 1; i <= 12; i++ {
		second.Reads = append(second.Reads, read("g3", fmt.Sprintf("u%02d", i), 16, 3660))
	}
	second.Receipts = []rollup.ReceiptRow{
		receipt(g1[0], 2, 11, 22, 12000), receipt(g1[1], 2, 22, 25, 5000), receipt(g1[2], 2, 35, 60, 30000), receipt(g1[3], 2, 55, 65, 15000),
		receipt(g2[0], 1, 3701.5, 3701.5, 1500), receipt(g2[1], 1, 3740, 3740, 30000), receipt(g2[2], 0, 0, 0, 0),
		receipt(g3[0], 11, 3660, 3660, 60000), receipt(g3[1], 11, 3660, 3660, 50000), receipt(g3[2], 11, 3660, 3660, 40000), receipt(g3[3], 11, 3660, 3660, 30000),
	}
	second.Presence = []rollup.PresenceRow{
		offline("alice", "s1", 600), offline("bob", "s2", 70), offline("dave", "s4", 160), offline("erin", "s5", 3900),
		offline("frank", "s6", 3630), offline("gina", "s7", -35940), online("ivan", "s9", "e1", 200), offline("ivan", "s9", 500),
		offline("kim", "s11", 3700),
		// A row with both times (rollup.Sink makes none, Write takes it):
		// two events.
		{User: "jill", Session: "s10", Edge: "e2", OnlineAt: at(3000), OfflineAt: at(3060)},
	}
	// Rows in a batch come in no particular order.
	sort.Slice(second.Reads, func(i, j int) bool { return second.Reads[i].User > second.Reads[j].User })
	return first, second
}

// expected is each query's exact result on the fixture, worked out by
// hand (the comments show how).
var expected = map[string][][]string{
	// g1's (message, reader) delays in ms: 4: bob 1000, carol 12000;
	// 5: carol 2000, alice 5000; 6: bob 5000, carol 30000; 8: dave 5000,
	// alice 15000 (dave joined at 7: 4-6 are not his). Sorted, p50 is the
	// 5th of 8 (5000), p90 the 8th (30000). g2: 1500, 30000. g3: 11
	// readers per message at 60000, 50000, 40000 and 30000 ms.
	"time_to_read_by_group": {
		{"g1", "8", "5000", "30000"},
		{"g2", "2", "30000", "30000"},
		{"g3", "44", "50000", "60000"},
	},
	// Latest receipts: g2 1+1+0 of 3 possible; g1 2 readers of 2, 2, 2
	// and 3; g3 11 of 11 each.
	"read_ratio_by_group_size": {
		{"2", "3", "2", "3", "0.6667"},
		{"3-10", "4", "8", "9", "0.8889"},
		{"11-100", "4", "44", "44", "1"},
	},
	"busiest_groups_per_hour": {
		{"2024-03-01 10:00:00", "g1", "4", "3"},
		{"2024-03-01 11:00:00", "g3", "4", "2"},
		{"2024-03-01 11:00:00", "g2", "3", "2"},
	},
	// naive: g1 3*2*3 + 4*3 = 30; g2 3*2*1 = 6; g3 4*12*11 = 528.
	// Causeway: read frames + windows with reads * largest size: g1 7 +
	// 7*4; g2 2 + 2*2; g3 12 + 1*12.
	"receipt_traffic_saved": {
		{"g1", "4", "30", "35", "0.86"},
		{"g2", "3", "6", "6", "1"},
		{"g3", "4", "528", "24", "22"},
	},
	// e1: alice 600 s, bob 60 s, frank 30 s, gina 120 s (from February);
	// sorted 30, 60, 120, 600: p50 is the 3rd (index 0.5*4), p90 the 4th.
	// e2: dave 120 s, erin 300 s, ivan 400 s (from his first attachment,
	// on e2), jill 60 s, and carol still online. hank and kim began
	// before the data: not here.
	"presence_session_lengths": {
		{"e1", "4", "0", "120", "600", "600"},
		{"e2", "5", "1", "300", "400", "400"},
	},
	// hank ended at 10:00:05, kim at 11:01:40.
	"presence_sessions_started_before_data": {
		{"2", "2024-03-01 10:00:05", "2024-03-01 11:01:40"},
	},
	"activity_over_time": {
		{"2024-03-01 10:00:00", "2", "4", "3", "5", "4", "6", "0"},
		{"2024-03-01 10:01:00", "1", "0", "0", "2", "2", "0", "1"},
		{"2024-03-01 10:58:00", "1", "0", "0", "0", "0", "12", "0"},
		{"2024-03-01 11:00:00", "1", "4", "2", "0", "0", "0", "0"},
		{"2024-03-01 11:01:00", "2", "2", "2", "13", "13", "0", "0"},
		{"2024-03-01 11:02:00", "1", "1", "1", "1", "1", "0", "0"},
	},
	"group_activity_per_minute": {
		{"g1", "2024-03-01 10:00:00", "4", "3", "5", "4", "4", "0"},
		{"g1", "2024-03-01 10:01:00", "0", "0", "2", "2", "0", "1"},
		{"g2", "2024-03-01 10:00:00", "0", "0", "0", "0", "2", "0"},
		{"g2", "2024-03-01 11:01:00", "2", "2", "1", "1", "0", "0"},
		{"g2", "2024-03-01 11:02:00", "1", "1", "1", "1", "0", "0"},
		{"g3", "2024-03-01 10:58:00", "0", "0", "0", "0", "12", "0"},
		{"g3", "2024-03-01 11:00:00", "4", "2", "0", "0", "0", "0"},
		{"g3", "2024-03-01 11:01:00", "0", "0", "12", "12", "0", "0"},
	},
	"messages_not_read_by_all": {
		{"g1", "8", "carol", "4", "2", "1", "15000"},
		{"g2", "5", "erin", "2", "0", "1", "0"},
	},
}
