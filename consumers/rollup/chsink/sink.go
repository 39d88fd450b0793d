// Package chsink writes the rollup's rows (rollup.Batch) to ClickHouse
// over the native protocol (clickhouse-go v2), and applies the schema
// migrations embedded from schemas/clickhouse (Migrate).
//
// Idempotence is part of the table design, not of the writer: every row
// has a deterministic key, the timeline tables and the presence events
// are ReplacingMergeTree on that key, the receipt aggregates
// ReplacingMergeTree(version), and the per-minute activity keeps uniqExact
// sets. Writing the same Batch twice
// (a retry after an error, a replay of Kafka records) leaves every query
// of docs/analytics.md (Queries) with the same result. So a failed Write
// may have written some tables and not others: write the same batch again.
//
// It works with ClickHouse 18.16 (Debian's) and current releases: every
// INSERT names its columns, and times are Unix milliseconds (18.16 has no
// DateTime64).
//
// A Sink is safe for concurrent use: the driver pools connections
// (Config.MaxOpenConns). Write never retries by itself; the caller owns
// the retry policy and the buffering.
package chsink

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/causeway/causeway/consumers/rollup"
)

// Config says where ClickHouse is. The zero value of every field but Addr
// is a documented default.
type Config struct {
	// Addr is HOST:PORT of the native protocol (9000 on a stock server;
	// 19000 for scripts/clickhouse.sh).
	Addr string
	// Database holds the tables (default "causeway").
	Database string
	// Username and Password authenticate (default user "default", no
	// password).
	Username, Password string
	// TLS, if set, encrypts the connection (the server's secure native
	// port, 9440 on a stock server).
	TLS *tls.Config
	// DialTimeout bounds connecting (default 5s).
	DialTimeout time.Duration
	// MaxOpenConns bounds the pool (default 4).
	MaxOpenConns int
}

// DefaultDatabase is the database used when Config.Database is empty.
const DefaultDatabase = "causeway"

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (c Config) withDefaults() Config {
	if c.Database == "" {
		c.Database = DefaultDatabase
	}
	if c.Username == "" {
		c.Username = "default"
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.MaxOpenConns <= 0 {
		c.MaxOpenConns = 4
	}
	return c
}

// Validate reports the first invalid field (after defaults).
func (c Config) Validate() error {
	c = c.withDefaults()
	host, port, err := net.SplitHostPort(c.Addr)
	if err != nil || host == "" {
		return fmt.Errorf("clickhouse address %q: want HOST:PORT of the native protocol", c.Addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("clickhouse address %q: port must be a number from 1 to 65535", c.Addr)
	}
	if !identifier.MatchString(c.Database) {
		return fmt.Errorf("clickhouse database %q: want letters, digits and underscores, not starting with a digit", c.Database)
	}
	return nil
}

// open connects to database db ("" for the user's default database).
func (c Config) open(db string) (driver.Conn, error) {
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:         []string{c.Addr},
		Auth:         clickhouse.Auth{Database: db, Username: c.Username, Password: c.Password},
		TLS:          c.TLS,
		DialTimeout:  c.DialTimeout,
		MaxOpenConns: c.MaxOpenConns,
		MaxIdleConns: c.MaxOpenConns,
		Compression:  &clickhouse.Compression{Method: clickhouse.CompressionLZ4},
		ClientInfo:   clickhouse.ClientInfo{Products: []struct{ Name, Version string }{{Name: "causeway-rollup", Version: "1"}}},
	})
	if err != nil {
		return nil, fmt.Errorf("open clickhouse %s: %w", c.Addr, err)
	}
	return conn, nil
}

// Sink writes batches of rollup rows. Create it with New.
type Sink struct {
	cfg  Config
	conn driver.Conn
}

// New validates cfg and sets up the connection pool. It does not dial:
// ClickHouse may be down at start (call Ping to find out); the tables must
// exist (Migrate) before the first Write.
func New(cfg Config) (*Sink, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	conn, err := cfg.open(cfg.Database)
	if err != nil {
		return nil, err
	}
	return &Sink{cfg: cfg, conn: conn}, nil
}

// Ping checks that ClickHouse answers and the database exists.
func (s *Sink) Ping(ctx context.Context) error {
	if err := s.conn.Ping(ctx); err != nil {
		return fmt.Errorf("ping clickhouse %s database %s: %w", s.cfg.Addr, s.cfg.Database, err)
	}
	return nil
}

// Close releases the connections. Writes in progress fail.
func (s *Sink) Close() error {
	return s.conn.Close()
}

// The INSERT of each row kind, with its column list: 18.16 needs it over
// the native protocol, and it keeps the computed (MATERIALIZED) columns
// out.
const (
	insertMessages = "INSERT INTO messages (group_id, seq, sender, sent_at_ms, members_at_send)"
	insertReads    = "INSERT INTO reads (group_id, user_id, watermark, read_at_ms)"
	insertMembers  = "INSERT INTO member_events (group_id, seq, user_id, joined, event_at_ms)"
	insertReceipts = "INSERT INTO receipts (group_id, seq, sender, sent_at_ms, members_at_send, read_count, first_read_at_ms, last_read_at_ms, ttr_p50_ms, ttr_p90_ms, ttr_p99_ms, version)"
	insertPresence = "INSERT INTO presence_events (user_id, session_id, edge_id, online, at_ms)"
)

// Write inserts every row of b, one batched INSERT per row kind that has
// rows; a presence row becomes an event per time it has (OnlineAt,
// OfflineAt) in presence_events. It is idempotent by table design: writing
// the same batch again, all of it or after a partial failure, changes no
// query result. The error names the table and the number of rows being
// written.
func (s *Sink) Write(ctx context.Context, b rollup.Batch) error {
	if len(b.Messages) > 0 {
		err := s.insert(ctx, "messages", insertMessages, len(b.Messages), func(bt driver.Batch) error {
			for _, r := range b.Messages {
				if err := bt.Append(r.Group, r.Seq, r.Sender, unixMs(r.SentAt), r.MembersAtSend); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if len(b.Members) > 0 {
		err := s.insert(ctx, "member_events", insertMembers, len(b.Members), func(bt driver.Batch) error {
			for _, r := range b.Members {
				var joined uint8
				if r.Joined {
					joined = 1
				}
				if err := bt.Append(r.Group, r.Seq, r.User, joined, unixMs(r.At)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if len(b.Reads) > 0 {
		err := s.insert(ctx, "reads", insertReads, len(b.Reads), func(bt driver.Batch) error {
			for _, r := range b.Reads {
				if err := bt.Append(r.Group, r.User, r.Watermark, unixMs(r.ReadAt)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if len(b.Receipts) > 0 {
		err := s.insert(ctx, "receipts", insertReceipts, len(b.Receipts), func(bt driver.Batch) error {
			for _, r := range b.Receipts {
				if err := bt.Append(r.Group, r.Seq, r.Sender, unixMs(r.SentAt), r.MembersAtSend, r.ReadCount,
					unixMs(r.FirstReadAt), unixMs(r.LastReadAt), r.TTRp50, r.TTRp90, r.TTRp99, r.Version); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if events := presenceEvents(b.Presence); len(events) > 0 {
		err := s.insert(ctx, "presence_events", insertPresence, len(events), func(bt driver.Batch) error {
			for _, e := range events {
				if err := bt.Append(e.user, e.session, e.edge, e.online, e.atMs); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// insert runs one batched INSERT of n rows into table.
func (s *Sink) insert(ctx context.Context, table, query string, n int, fill func(driver.Batch) error) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("insert %d rows into clickhouse %s.%s: %w", n, s.cfg.Database, table, err)
		}
	}()
	bt, err := s.conn.PrepareBatch(ctx, query)
	if err != nil {
		return err
	}
	// Abort releases the connection when fill or Send failed; after a
	// successful Send it only reports that the batch was sent.
	defer func() { _ = bt.Abort() }()
	if err := fill(bt); err != nil {
		return err
	}
	return bt.Send()
}

// presenceEvent is one row of presence_events.
type presenceEvent struct {
	user, session, edge string
	online              uint8 // 1: online, 0: offline
	atMs                uint64
}

// presenceEvents turns presence rows into events: an online event (with
// the edge) for each row's OnlineAt and an offline event for its
// OfflineAt, each if set. An event depends only on its row, so a row
// written again is the same events again. Version is not written: events
// are never updated.
func presenceEvents(rows []rollup.PresenceRow) []presenceEvent {
	var out []presenceEvent
	for _, r := range rows {
		if !r.OnlineAt.IsZero() {
			out = append(out, presenceEvent{user: r.User, session: r.Session, edge: r.Edge, online: 1, atMs: unixMs(r.OnlineAt)})
		}
		if !r.OfflineAt.IsZero() {
			out = append(out, presenceEvent{user: r.User, session: r.Session, edge: r.Edge, online: 0, atMs: unixMs(r.OfflineAt)})
		}
	}
	return out
}

// unixMs is t in Unix milliseconds; the zero time (unread, still online)
// and anything before 1970 are 0.
func unixMs(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	ms := t.UnixMilli()
	if ms < 0 {
		return 0
	}
	return uint64(ms)
}
