-- The per-message receipt aggregates the rollup recomputes, and presence
-- events.
--
-- Receipts are versioned: the latest version of a key wins.
-- ReplacingMergeTree(version) keeps the row with the highest version of
-- each key on merge; queries read it with FINAL or argMax(x, version).
-- Writing any version again (a retry, a replay of older records) cannot
-- change which row wins.

-- Per-message receipt aggregate, keyed by (group_id, seq).
CREATE TABLE IF NOT EXISTS receipts
(
    group_id         String,
    seq              UInt64,
    sender           String,
    sent_at_ms       UInt64,
    members_at_send  UInt32,
    read_count       UInt32,
    first_read_at_ms UInt64, -- 0: unread
    last_read_at_ms  UInt64, -- 0: unread
    ttr_p50_ms       Float64,
    ttr_p90_ms       Float64,
    ttr_p99_ms       Float64,
    version          UInt64,
    sent_at          DateTime('UTC') MATERIALIZED toDateTime(intDiv(sent_at_ms, 1000), 'UTC')
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(sent_at)
ORDER BY (group_id, seq);

-- Presence as events: one row per session going online (online = 1, an
-- attachment record of the sequencer's changelog, with its edge) or
-- offline (online = 0, its tombstone; edge_id may be empty). The writer is
-- stateless per record and cannot know when an earlier session began, so
-- a session is not one versioned row but its events, put together at
-- query time (docs/analytics.md, presence_session_lengths). An event's
-- time is fixed (its record's timestamp), so a duplicate of an event is
-- the same row, with the same key, in the same partition, and merges fold
-- it away. Not versioned: nothing here is ever updated.
CREATE TABLE IF NOT EXISTS presence_events
(
    user_id    String,
    session_id String,
    edge_id    String, -- the edge of an online event; may be empty on an offline one
    online     UInt8,  -- 1: online (attached), 0: offline (detached)
    at_ms      UInt64,
    at         DateTime('UTC') MATERIALIZED toDateTime(intDiv(at_ms, 1000), 'UTC')
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(at)
ORDER BY (user_id, session_id, online, at_ms);
