package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/causeway/causeway/edge"
	"github.com/causeway/causeway/edge/client"
	"github.com/causeway/causeway/pipeline/devcluster"
)

// TestInspectCLI runs `causeway inspect` over what a running cluster
// wrote: alice and bob on two edges in room-1.
func TestInspectCLI(t *testing.T) {
	t.Parallel()
	secret := []byte(e2eSecret)
	cl := devcluster.StartTest(t, 2, secret, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var clients []*client.Client
	for i, user := range []string{"alice", "bob"} {
		tok, err := edge.Mint(secret, user, []string{"room-*"}, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.Dial(ctx, cl.URL(i), tok, nil)
		if err != nil {
			t.Fatalf("dial as %s: %v", user, err)
		}
		defer c.Close()
		if err := c.Join(ctx, "room-1"); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	seq, err := clients[1].Send(ctx, "room-1", "m1", map[string]string{"text": "hi"})
	if err != nil || seq != 3 { // two joins, then the message
		t.Fatalf("send: seq %d, %v", seq, err)
	}

	out, err := runOut(t, "inspect", "--brokers", cl.Broker.Addr(), "--topic", "groups", "--group-id", "room-1")
	if err != nil {
		t.Fatalf("inspect: %v", err)
	}
	var sends, joins int
	for _, ln := range strings.Split(strings.TrimSpace(out), "\n") {
		var l struct {
			Topic, Key, Schema, Timestamp string
			Partition                     *int32
			Offset                        *int64
			Version                       uint32
			Value                         struct {
				User string
				Join *struct{}
				Send *struct {
					ClientMsgID string `json:"client_msg_id"`
				}
			}
		}
		if err := json.Unmarshal([]byte(ln), &l); err != nil {
			t.Fatalf("not JSON: %q: %v", ln, err)
		}
		if l.Topic != "causeway.groups" || l.Key != "room-1" || l.Schema != "causeway.v1.GroupEvent" || l.Version != 1 ||
			l.Partition == nil || l.Offset == nil || l.Timestamp == "" {
			t.Errorf("line lacks a field or has the wrong one: %s", ln)
		}
		if l.Value.Join != nil {
			joins++
		}
		if l.Value.Send != nil && l.Value.Send.ClientMsgID == "m1" && l.Value.User == "bob" {
			sends++
		}
	}
	if joins != 2 || sends != 1 {
		t.Errorf("%d joins and %d sends of bob's m1, want 2 and 1:\n%s", joins, sends, out)
	}

	out, err = runOut(t, "inspect", "--brokers", cl.Broker.Addr(), "--topic", "causeway.sequencer-state", "--group-id", "room-1", "--table")
	if err != nil {
		t.Fatalf("inspect --table: %v", err)
	}
	for _, want := range []string{"PARTITION  OFFSET", `room-1\x00g`, "GroupMeta", `"seq":"3"`, "Membership", `room-1\x00m\x00bob`} {
		if !strings.Contains(out, want) {
			t.Errorf("state table lacks %q:\n%s", want, out)
		}
	}
}

func TestInspectCLIFlags(t *testing.T) {
	t.Parallel()
	for args, want := range map[string]string{
		"inspect":              "--topic is required",
		"inspect --topic nope": `topic "nope": not one of the layout's topics`,
		"inspect --topic groups --from yesterday":       "--from \"yesterday\": want an offset",
		"inspect --topic groups --to -3":                "--to \"-3\": an offset must be 0 or more",
		"inspect --topic groups --partition -2":         "--partition -2",
		"inspect --topic groups --group-id bad!id":      `--group-id "bad!id"`,
		"inspect --topic groups --from 10 --to 5":       "from 10 is not before to 5",
		"inspect --topic groups --brokers nope":         "not host:port",
		"inspect --topic groups extra":                  "unknown command",
		"inspect --topic groups --table=maybe":          "invalid argument",
		"inspect --topic groups --partition x":          "invalid argument",
		"inspect --topic groups --follow --from 2026-x": "--from",
	} {
		_, err := runOut(t, strings.Fields(args)...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("causeway %s: %v, want an error with %q", args, err, want)
		}
	}
}
