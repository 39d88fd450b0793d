package edge

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
)

// A connection's logger adds its session and user to each line, as a
// preformatted one would, and respects the base handler's level.
func TestConnLoggerAttrs(t *testing.T) {
	var buf bytes.Buffer
	base := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	log := connLogger(base, "session", "s1").With("user", "u1")
	log.Debug("hidden")
	log.Info("closing", "id", "r7")
	log.WithGroup("g").Info("grouped", "k", "v")
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2 (debug is off):\n%s", len(lines), buf.String())
	}
	var first map[string]any
	if err := json.Unmarshal(lines[0], &first); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"msg": "closing", "session": "s1", "user": "u1", "id": "r7"} {
		if first[k] != want {
			t.Errorf("%s = %v, want %s in %s", k, first[k], want, lines[0])
		}
	}
	var second map[string]any
	if err := json.Unmarshal(lines[1], &second); err != nil {
		t.Fatal(err)
	}
	if g, _ := second["g"].(map[string]any); second["session"] != "s1" || g["k"] != "v" {
		t.Errorf("grouped line %s: session outside the group, k inside", lines[1])
	}
}
