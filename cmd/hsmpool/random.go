package main

import (
	"fmt"
	"io"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/spf13/cobra"
)

// maxRandom is the most bytes one request may ask for (azure-mhsm-api.md §3.2).
const maxRandom = 128

// newRandomCmd builds "hsmpool random".
func newRandomCmd() *cobra.Command {
	var count int
	cmd := &cobra.Command{
		Use:   "random --count N",
		Short: "Get random bytes from the pool's HSMs",
		Long: `random prints N bytes (1 to 128) from the random number generator of the pool's
HSMs, base64url.`,
		Example: `  hsmpool random --count 32`,
		Args:    cobra.NoArgs,
	}
	cmd.Flags().IntVar(&count, "count", 0, "how many bytes, 1 to 128 (required)")
	validate := func([]string) error {
		if count < 1 || count > maxRandom {
			return fmt.Errorf("--count %d: want 1 to %d bytes", count, maxRandom)
		}
		return nil
	}
	return defaultPoolOptions().command(cmd, true, validate, func(s *session, _ []string) error {
		n := int32(count)
		r, err := s.client.Keys().GetRandomBytes(s.ctx, azkeys.GetRandomBytesParameters{Count: &n}, nil)
		if err != nil {
			return err
		}
		return s.print(r.RandomBytes, func(w io.Writer) error { _, err := fmt.Fprintln(w, b64(r.Value)); return err })
	})
}
