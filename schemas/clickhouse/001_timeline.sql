-- The timeline as the rollup sees it: messages, read watermarks and
-- membership changes. Each row has a deterministic identity (the ORDER BY
-- key); a row written twice (a retry, a replay) is the same row twice and
-- ReplacingMergeTree folds it away on merge. Until then, queries read
-- distinct keys (FINAL, GROUP BY the key, or uniqExact): see
-- docs/analytics.md.
--
-- Times are stored as Unix milliseconds (*_ms, exact durations; 18.16 has
-- no DateTime64) with a DateTime (seconds, UTC) computed from them for
-- bucketing. Message bodies are never written here.

CREATE TABLE IF NOT EXISTS messages
(
    group_id        String,
    seq             UInt64,
    sender          String,
    sent_at_ms      UInt64,
    members_at_send UInt32,
    sent_at         DateTime('UTC') MATERIALIZED toDateTime(intDiv(sent_at_ms, 1000), 'UTC')
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(sent_at)
ORDER BY (group_id, seq);

-- One row per move of a member's read watermark ("read up to watermark").
CREATE TABLE IF NOT EXISTS reads
(
    group_id   String,
    user_id    String,
    watermark  UInt64,
    read_at_ms UInt64,
    read_at    DateTime('UTC') MATERIALIZED toDateTime(intDiv(read_at_ms, 1000), 'UTC')
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(read_at)
ORDER BY (group_id, user_id, watermark);

-- Joins (joined = 1) and leaves (joined = 0); each is a timeline event
-- with its own seq.
CREATE TABLE IF NOT EXISTS member_events
(
    group_id    String,
    seq         UInt64,
    user_id     String,
    joined      UInt8,
    event_at_ms UInt64,
    event_at    DateTime('UTC') MATERIALIZED toDateTime(intDiv(event_at_ms, 1000), 'UTC')
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(event_at)
ORDER BY (group_id, seq);
