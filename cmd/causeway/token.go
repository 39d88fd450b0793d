package main

import (
	"fmt"
	"time"

	"github.com/causeway/causeway/edge"
	"github.com/spf13/cobra"
)

func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Print a token signed with the configured secret (auth.secret)",
		Args:  cobra.NoArgs,
	}
	cmd.Flags().String("user", "", "user ID (the token's sub)")
	cmd.Flags().StringSlice("groups", nil, "glob patterns of joinable groups, e.g. 'room-*' (repeat or comma-separate)")
	cmd.Flags().Duration("ttl", time.Hour, "lifetime")
	cmd.Flags().String("issuer", "", "the iss claim (default: auth.issuer)")
	cmd.Flags().String("audience", "", "the aud claim (default: auth.audience)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := load(cmd, flagKeys{})
		if err != nil {
			return err
		}
		user, _ := cmd.Flags().GetString("user")
		groups, _ := cmd.Flags().GetStringSlice("groups")
		ttl, _ := cmd.Flags().GetDuration("ttl")
		if user == "" {
			return fmt.Errorf("--user is required")
		}
		iss, _ := cmd.Flags().GetString("issuer")
		aud, _ := cmd.Flags().GetString("audience")
		if iss == "" {
			iss = c.Auth.Issuer
		}
		if aud == "" {
			aud = c.Auth.Audience
		}
		tok, err := edge.MintFor([]byte(c.Auth.Secret), user, groups, ttl, time.Now(), iss, aud)
		if err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), tok)
		return nil
	}
	return cmd
}
