package inspect

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
)

// Line is the JSON form of a Record, one per line in `causeway inspect`'s
// output. Field names follow the .proto files (ts_ms, client_msg_id);
// bytes fields, such as a message body, are base64 as protojson has them.
type Line struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Timestamp string `json:"timestamp"`
	// Key is the key as a string; KeyHex replaces it when it is not
	// UTF-8. Both are absent for a record without a key.
	Key      *string   `json:"key,omitempty"`
	KeyHex   string    `json:"key_hex,omitempty"`
	StateKey *StateKey `json:"state_key,omitempty"`
	Schema   string    `json:"schema,omitempty"`
	Version  *uint32   `json:"version,omitempty"`
	// Value is the protojson of the decoded value; null for a tombstone
	// or an undecodable value.
	Value     json.RawMessage `json:"value"`
	Tombstone bool            `json:"tombstone,omitempty"`
	// Error and ValueHex are set for a value that did not decode.
	Error    string `json:"error,omitempty"`
	ValueHex string `json:"value_hex,omitempty"`
	// Txn is "open" for a record of a transaction not ended when the
	// read stopped.
	Txn string `json:"txn,omitempty"`
}

var protoJSON = protojson.MarshalOptions{UseProtoNames: true}

// ToLine converts r to its JSON form.
func ToLine(r Record) Line {
	l := Line{
		Topic: r.Topic, Partition: r.Partition, Offset: r.Offset,
		Timestamp: r.Timestamp.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		StateKey:  r.StateKey, Schema: r.Schema, Version: r.Version, Tombstone: r.Tombstone,
		Value: json.RawMessage("null"),
	}
	if r.Key != nil {
		if utf8.Valid(r.Key) {
			k := string(r.Key)
			l.Key = &k
		} else {
			l.KeyHex = hex.EncodeToString(r.Key)
		}
	}
	if r.Open {
		l.Txn = "open"
	}
	switch {
	case r.Err != nil:
		l.Error = r.Err.Error()
		l.ValueHex = hex.EncodeToString(r.Raw)
	case r.Value != nil:
		b, err := protoJSON.Marshal(r.Value)
		var buf bytes.Buffer
		if err == nil {
			// protojson varies its spacing on purpose; one record, one
			// compact line.
			err = json.Compact(&buf, b)
		}
		if err != nil {
			l.Error = "encode as JSON: " + err.Error()
			l.ValueHex = hex.EncodeToString(r.Raw)
			break
		}
		l.Value = buf.Bytes()
	}
	return l
}

// JSONSink writes one JSON object per record and line.
type JSONSink struct {
	w   *bufio.Writer
	enc *json.Encoder
}

// NewJSONSink writes JSON lines to w.
func NewJSONSink(w io.Writer) *JSONSink {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	return &JSONSink{w: bw, enc: enc}
}

func (s *JSONSink) Write(r Record) error {
	if err := s.enc.Encode(ToLine(r)); err != nil {
		return fmt.Errorf("write record: %w", err)
	}
	return nil
}

func (s *JSONSink) Flush() error { return s.w.Flush() }

// TableSink writes an aligned table: one header, then a row per record.
// Rows are aligned within each flushed batch and columns only ever grow,
// so a follower's output stays readable.
type TableSink struct {
	w       io.Writer
	widths  []int
	rows    [][]string
	started bool
	// ValueWidth truncates the VALUE column (runes); 0 keeps it whole.
	ValueWidth int
}

var tableHeader = []string{"PARTITION", "OFFSET", "TIMESTAMP", "KEY", "SCHEMA", "V", "VALUE"}

// NewTableSink writes a table to w, values cut at 160 runes.
func NewTableSink(w io.Writer) *TableSink {
	t := &TableSink{w: w, ValueWidth: 160}
	for _, h := range tableHeader {
		t.widths = append(t.widths, len(h))
	}
	return t
}

func (t *TableSink) Write(r Record) error {
	l := ToLine(r)
	key := l.KeyHex
	if l.Key != nil {
		// Changelog keys hold NULs; quoting keeps them visible.
		key = strings.Trim(strconv.Quote(*l.Key), `"`)
	}
	schema := l.Schema
	if i := strings.LastIndexByte(schema, '.'); i >= 0 {
		schema = schema[i+1:]
	}
	v := "-"
	if l.Version != nil {
		v = strconv.FormatUint(uint64(*l.Version), 10)
	}
	val := string(l.Value)
	switch {
	case l.Error != "":
		val = "UNDECODABLE " + l.Error + " value_hex=" + l.ValueHex
	case l.Tombstone:
		val = "(tombstone)"
	}
	if l.Txn != "" {
		val = "[txn " + l.Txn + "] " + val
	}
	if t.ValueWidth > 0 && utf8.RuneCountInString(val) > t.ValueWidth {
		val = string([]rune(val)[:t.ValueWidth-1]) + "…"
	}
	t.rows = append(t.rows, []string{strconv.Itoa(int(l.Partition)), strconv.FormatInt(l.Offset, 10),
		l.Timestamp, key, schema, v, val})
	return nil
}

func (t *TableSink) Flush() error {
	if t.started && len(t.rows) == 0 {
		return nil
	}
	for _, row := range t.rows {
		for i, c := range row[:len(row)-1] {
			t.widths[i] = max(t.widths[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	line := func(cells []string) {
		for i, c := range cells {
			if i == len(cells)-1 {
				b.WriteString(c)
				break
			}
			b.WriteString(c)
			b.WriteString(strings.Repeat(" ", t.widths[i]-utf8.RuneCountInString(c)+2))
		}
		b.WriteByte('\n')
	}
	if !t.started {
		line(tableHeader)
		t.started = true
	}
	for _, row := range t.rows {
		line(row)
	}
	t.rows = t.rows[:0]
	if _, err := io.WriteString(t.w, b.String()); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}
