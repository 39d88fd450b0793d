package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/causeway/causeway/edge/client"
	"github.com/spf13/cobra"
)

func newClientCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "client",
		Short: "A terminal client: join and subscribe to a group, print frames, send stdin lines",
		Args:  cobra.NoArgs,
	}
	cmd.Flags().String("url", "ws://127.0.0.1:8080/v1/ws", "edge WebSocket URL")
	cmd.Flags().String("token", "", "token (causeway token --user ...)")
	cmd.Flags().String("group", "", "group to join and subscribe to")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		url, _ := cmd.Flags().GetString("url")
		token, _ := cmd.Flags().GetString("token")
		group, _ := cmd.Flags().GetString("group")
		if token == "" || group == "" {
			return fmt.Errorf("--token and --group are required")
		}
		ctx := cmd.Context()
		c, err := client.Dial(ctx, url, token, nil)
		if err != nil {
			return err
		}
		defer c.Close()
		out := cmd.OutOrStdout()
		fmt.Fprintf(out, "# connected to %s as %s (session %s)\n", c.Edge(), c.User(), c.Session())
		if err := c.Join(ctx, group); err != nil {
			return fmt.Errorf("join %s: %w", group, err)
		}
		if _, err := c.Subscribe(ctx, group, nil); err != nil {
			return fmt.Errorf("subscribe %s: %w", group, err)
		}
		go func() {
			for f := range c.Events() {
				fmt.Fprintln(out, string(f.Raw))
			}
		}()
		lines := make(chan string)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(cmd.InOrStdin())
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		prefix := strconv.FormatInt(time.Now().UnixNano(), 36)
		n := 0
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-c.Done():
				return fmt.Errorf("connection closed: %w", c.Err())
			case line, ok := <-lines:
				if !ok {
					return nil
				}
				if line == "" {
					continue
				}
				// A line that is JSON is sent as is; anything else as
				// a string.
				var body any = line
				if json.Valid([]byte(line)) {
					body = json.RawMessage(line)
				}
				n++
				seq, err := c.Send(ctx, group, prefix+"-"+strconv.Itoa(n), body)
				if err != nil {
					fmt.Fprintf(out, "# send failed: %v\n", err)
					continue
				}
				fmt.Fprintf(out, "# sent as seq %d\n", seq)
			}
		}
	}
	return cmd
}
