package chsink

// Query is one of the ready analytics queries of docs/analytics.md. The
// doc quotes each SQL verbatim (a test checks it), and the tests run each
// one against a real ClickHouse with known rows, written once and then
// again, asserting the exact result both times.
//
// Every query is exact under duplicate rows: it reads each key once
// (GROUP BY the key with any/min/max/argMax, or FINAL) or counts distinct
// identities (uniqExact, uniqExactMerge), so a replayed or retried write
// changes nothing, before or after ClickHouse merges the parts. They run
// on ClickHouse 18.16 and current releases: no window functions, no WITH
// subqueries, one JOIN per SELECT with explicit ALL strictness and USING,
// and no alias that shadows a column.
type Query struct {
	Name  string // a stable identifier
	Title string // the question it answers (a heading in the doc)
	SQL   string
}

// Queries are the ready queries, in the doc's order.
var Queries = []Query{
	{
		Name:  "time_to_read_by_group",
		Title: "Time to read, p50 and p90, per group",
		// Every (message, reader) pair: a watermark move to W at time t
		// reads, at t, each seq after the reader's previous watermark up
		// to W. Like the rollup, a reader counts for a message when they
		// are not its sender, joined before it, and read it while a
		// member.
		SQL: `SELECT
    group_id,
    count() AS reader_pairs,
    quantileExact(0.5)(ttr_ms) AS ttr_p50_ms,
    quantileExact(0.9)(ttr_ms) AS ttr_p90_ms
FROM
(
    SELECT group_id, if(read_ms > sent_ms, read_ms - sent_ms, 0) AS ttr_ms
    FROM
    (
        SELECT group_id, user_id, seq, read_ms, sender, sent_ms
        FROM
        (
            SELECT
                group_id,
                user_id,
                prev_mark + 1 + arrayJoin(range(toUInt64(mark - prev_mark))) AS seq,
                mark_ms AS read_ms
            FROM
            (
                SELECT
                    group_id,
                    user_id,
                    tupleElement(m, 1) AS mark,
                    tupleElement(m, 2) AS mark_ms,
                    if(i = 1, toUInt64(0), tupleElement(marks[i - 1], 1)) AS prev_mark
                FROM
                (
                    SELECT group_id, user_id, arraySort(groupArray((watermark, first_ms))) AS marks
                    FROM
                    (
                        SELECT group_id, user_id, watermark, min(read_at_ms) AS first_ms
                        FROM reads
                        GROUP BY group_id, user_id, watermark
                    )
                    GROUP BY group_id, user_id
                )
                ARRAY JOIN marks AS m, arrayEnumerate(marks) AS i
            )
        )
        ALL INNER JOIN
        (
            SELECT group_id, seq, any(sender) AS sender, any(sent_at_ms) AS sent_ms
            FROM messages
            GROUP BY group_id, seq
        ) USING (group_id, seq)
        WHERE user_id != sender
    )
    ALL INNER JOIN
    (
        SELECT
            group_id,
            user_id,
            tupleElement(ev, 1) AS joined_seq,
            tupleElement(ev, 3) AS joined_ms,
            if(i < length(evs), tupleElement(evs[i + 1], 3), 18446744073709551615) AS left_ms
        FROM
        (
            SELECT group_id, user_id, arraySort(groupArray((seq, joined, event_at_ms))) AS evs
            FROM
            (
                SELECT DISTINCT group_id, user_id, seq, joined, event_at_ms
                FROM member_events
            )
            GROUP BY group_id, user_id
        )
        ARRAY JOIN evs AS ev, arrayEnumerate(evs) AS i
        WHERE tupleElement(ev, 2) = 1
    ) USING (group_id, user_id)
    WHERE seq > joined_seq AND read_ms >= joined_ms AND read_ms < left_ms
)
GROUP BY group_id
ORDER BY group_id`,
	},
	{
		Name:  "read_ratio_by_group_size",
		Title: "Read ratio by group size",
		SQL: `SELECT
    multiIf(members <= 2, '2', members <= 10, '3-10', members <= 100, '11-100', members <= 1000, '101-1000', '1001+') AS group_size,
    count() AS message_count,
    sum(readers) AS read_total,
    sum(members - 1) AS possible_reads,
    round(sum(readers) / sum(members - 1), 4) AS read_ratio
FROM
(
    SELECT
        group_id,
        seq,
        argMax(members_at_send, version) AS members,
        argMax(read_count, version) AS readers
    FROM receipts
    GROUP BY group_id, seq
)
WHERE members > 1
GROUP BY group_size
ORDER BY min(members)`,
	},
	{
		Name:  "busiest_groups_per_hour",
		Title: "Busiest groups per hour",
		SQL: `SELECT
    toStartOfHour(minute) AS hour,
    group_id,
    uniqExactMerge(messages_state) AS message_count,
    uniqExactMerge(senders_state) AS sender_count
FROM activity_minute_state
GROUP BY hour, group_id
HAVING message_count > 0
ORDER BY hour, message_count DESC, group_id
LIMIT 3 BY hour`,
	},
	{
		Name:  "receipt_traffic_saved",
		Title: "Receipt traffic: Causeway vs naive N*(N-1)",
		// 500 is rollup.window in milliseconds: at most one summary per
		// group per window, delivered to each member.
		SQL: `SELECT
    group_id,
    message_count,
    naive_frames,
    read_frames + windows * max_members AS causeway_frames,
    round(naive_frames / greatest(read_frames + windows * max_members, 1), 2) AS saved_factor
FROM
(
    SELECT
        group_id,
        count() AS message_count,
        sum(members * (members - 1)) AS naive_frames,
        max(members) AS max_members
    FROM
    (
        SELECT group_id, seq, any(members_at_send) AS members
        FROM messages
        GROUP BY group_id, seq
    )
    GROUP BY group_id
)
ALL LEFT JOIN
(
    SELECT
        group_id,
        uniqExact(user_id, watermark) AS read_frames,
        uniqExact(intDiv(read_at_ms, 500)) AS windows
    FROM reads
    GROUP BY group_id
) USING (group_id)
ORDER BY group_id`,
	},
	{
		Name:  "presence_session_lengths",
		Title: "Presence session lengths per edge",
		// A session is its events: it began at its first online event
		// (on that event's edge) and ended at its offline event. A session
		// with only an offline event began before the data (its online
		// record predates the sink or was compacted away): its edge and
		// length are unknown, so it is left out here and counted by
		// presence_sessions_started_before_data. Duplicate events change
		// no min, max or argMin.
		SQL: `SELECT
    edge,
    count() AS sessions,
    countIf(offline_ms = 0) AS still_online,
    quantileExactIf(0.5)(length_ms, offline_ms > 0) / 1000 AS p50_s,
    quantileExactIf(0.9)(length_ms, offline_ms > 0) / 1000 AS p90_s,
    maxIf(length_ms, offline_ms > 0) / 1000 AS max_s
FROM
(
    SELECT
        user_id,
        session_id,
        argMinIf(edge_id, at_ms, online = 1) AS edge,
        minIf(at_ms, online = 1) AS online_ms,
        maxIf(at_ms, online = 0) AS offline_ms,
        if(offline_ms > online_ms, offline_ms - online_ms, 0) AS length_ms
    FROM presence_events
    GROUP BY user_id, session_id
    HAVING countIf(online = 1) > 0
)
GROUP BY edge
ORDER BY edge`,
	},
	{
		Name:  "presence_sessions_started_before_data",
		Title: "Presence sessions that started before the data",
		SQL: `SELECT
    count() AS sessions,
    toDateTime(intDiv(min(offline_ms), 1000), 'UTC') AS first_offline,
    toDateTime(intDiv(max(offline_ms), 1000), 'UTC') AS last_offline
FROM
(
    SELECT user_id, session_id, maxIf(at_ms, online = 0) AS offline_ms
    FROM presence_events
    GROUP BY user_id, session_id
    HAVING countIf(online = 1) = 0
)`,
	},
	{
		Name:  "activity_over_time",
		Title: "Activity over time, all groups, per minute",
		SQL: `SELECT
    minute,
    uniqExact(group_id) AS active_groups,
    uniqExactMerge(messages_state) AS message_count,
    uniqExactMerge(senders_state) AS sender_count,
    uniqExactMerge(receipts_state) AS receipt_count,
    uniqExactMerge(readers_state) AS reader_count,
    uniqExactMerge(joins_state) AS join_count,
    uniqExactMerge(leaves_state) AS leave_count
FROM activity_minute_state
GROUP BY minute
ORDER BY minute`,
	},
	{
		Name:  "group_activity_per_minute",
		Title: "Activity per group per minute (the activity_per_minute view)",
		SQL: `SELECT group_id, minute, messages, senders, receipts, readers, joins, leaves
FROM activity_per_minute
ORDER BY group_id, minute`,
	},
	{
		Name:  "messages_not_read_by_all",
		Title: "Messages not yet read by every member",
		SQL: `SELECT
    group_id,
    seq,
    sender,
    members_at_send,
    read_count,
    members_at_send - 1 - read_count AS unread_by,
    ttr_p50_ms
FROM receipts FINAL
WHERE read_count + 1 < members_at_send
ORDER BY group_id, seq`,
	},
}
