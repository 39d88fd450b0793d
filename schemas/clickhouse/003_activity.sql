-- Per-group per-minute activity: messages, active senders, receipts (read
-- watermark moves), readers, joins and leaves.
--
-- activity_minute_state holds, per (group_id, minute), uniqExact states:
-- the sets of distinct identities seen (a message is (group_id, seq), a
-- receipt (group_id, user_id, watermark), ...). Adding a duplicate to a set
-- leaves it unchanged, so a row written twice, or a materialized view that
-- fires twice for it, cannot inflate a count: exact under replays, before
-- and after merges. The identities include group_id so that states merge
-- correctly across groups too (activity of all groups per hour).
--
-- Three materialized views fill it from the timeline tables on insert;
-- activity_per_minute is the finalized view analysts query.

CREATE TABLE IF NOT EXISTS activity_minute_state
(
    group_id       String,
    minute         DateTime('UTC'),
    messages_state AggregateFunction(uniqExact, String, UInt64),
    senders_state  AggregateFunction(uniqExact, String),
    receipts_state AggregateFunction(uniqExact, String, String, UInt64),
    readers_state  AggregateFunction(uniqExact, String),
    joins_state    AggregateFunction(uniqExact, String, UInt64),
    leaves_state   AggregateFunction(uniqExact, String, UInt64)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(minute)
ORDER BY (group_id, minute);

-- A view fills every column of its target (18.16 requires it): the
-- columns a source does not feed get empty states (an -If that is never
-- true).
CREATE MATERIALIZED VIEW IF NOT EXISTS activity_from_messages TO activity_minute_state AS
SELECT
    group_id,
    toStartOfMinute(toDateTime(intDiv(sent_at_ms, 1000), 'UTC')) AS minute,
    uniqExactState(group_id, seq) AS messages_state,
    uniqExactState(sender) AS senders_state,
    uniqExactStateIf('', '', toUInt64(0), 0) AS receipts_state,
    uniqExactStateIf('', 0) AS readers_state,
    uniqExactStateIf('', toUInt64(0), 0) AS joins_state,
    uniqExactStateIf('', toUInt64(0), 0) AS leaves_state
FROM messages
GROUP BY group_id, minute;

CREATE MATERIALIZED VIEW IF NOT EXISTS activity_from_reads TO activity_minute_state AS
SELECT
    group_id,
    toStartOfMinute(toDateTime(intDiv(read_at_ms, 1000), 'UTC')) AS minute,
    uniqExactStateIf('', toUInt64(0), 0) AS messages_state,
    uniqExactStateIf('', 0) AS senders_state,
    uniqExactState(group_id, user_id, watermark) AS receipts_state,
    uniqExactState(user_id) AS readers_state,
    uniqExactStateIf('', toUInt64(0), 0) AS joins_state,
    uniqExactStateIf('', toUInt64(0), 0) AS leaves_state
FROM reads
GROUP BY group_id, minute;

CREATE MATERIALIZED VIEW IF NOT EXISTS activity_from_members TO activity_minute_state AS
SELECT
    group_id,
    toStartOfMinute(toDateTime(intDiv(event_at_ms, 1000), 'UTC')) AS minute,
    uniqExactStateIf('', toUInt64(0), 0) AS messages_state,
    uniqExactStateIf('', 0) AS senders_state,
    uniqExactStateIf('', '', toUInt64(0), 0) AS receipts_state,
    uniqExactStateIf('', 0) AS readers_state,
    uniqExactStateIf(group_id, seq, joined = 1) AS joins_state,
    uniqExactStateIf(group_id, seq, joined = 0) AS leaves_state
FROM member_events
GROUP BY group_id, minute;

-- Rows written before this migration (none on a fresh database) reach the
-- state table through the same SELECTs: a set, so running this again, or
-- overlapping with the views, changes nothing.
INSERT INTO activity_minute_state
SELECT
    group_id,
    toStartOfMinute(toDateTime(intDiv(sent_at_ms, 1000), 'UTC')) AS minute,
    uniqExactState(group_id, seq),
    uniqExactState(sender),
    uniqExactStateIf('', '', toUInt64(0), 0),
    uniqExactStateIf('', 0),
    uniqExactStateIf('', toUInt64(0), 0),
    uniqExactStateIf('', toUInt64(0), 0)
FROM messages
GROUP BY group_id, minute;

INSERT INTO activity_minute_state
SELECT
    group_id,
    toStartOfMinute(toDateTime(intDiv(read_at_ms, 1000), 'UTC')) AS minute,
    uniqExactStateIf('', toUInt64(0), 0),
    uniqExactStateIf('', 0),
    uniqExactState(group_id, user_id, watermark),
    uniqExactState(user_id),
    uniqExactStateIf('', toUInt64(0), 0),
    uniqExactStateIf('', toUInt64(0), 0)
FROM reads
GROUP BY group_id, minute;

INSERT INTO activity_minute_state
SELECT
    group_id,
    toStartOfMinute(toDateTime(intDiv(event_at_ms, 1000), 'UTC')) AS minute,
    uniqExactStateIf('', toUInt64(0), 0),
    uniqExactStateIf('', 0),
    uniqExactStateIf('', '', toUInt64(0), 0),
    uniqExactStateIf('', 0),
    uniqExactStateIf(group_id, seq, joined = 1),
    uniqExactStateIf(group_id, seq, joined = 0)
FROM member_events
GROUP BY group_id, minute;

CREATE VIEW IF NOT EXISTS activity_per_minute AS
SELECT
    group_id,
    minute,
    uniqExactMerge(messages_state) AS messages,
    uniqExactMerge(senders_state) AS senders,
    uniqExactMerge(receipts_state) AS receipts,
    uniqExactMerge(readers_state) AS readers,
    uniqExactMerge(joins_state) AS joins,
    uniqExactMerge(leaves_state) AS leaves
FROM activity_minute_state
GROUP BY group_id, minute;
