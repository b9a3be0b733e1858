package main

import (
	"errors"
	"io"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/spf13/cobra"
)

// newRotationPolicyCmd builds "hsmpool key rotation-policy".
func newRotationPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rotation-policy",
		Short: "Show or set when a key rotates",
		Long: `rotation-policy shows or sets a key's rotation policy: when the pool makes a new
version of the key by itself, and how long new versions are valid. A key needs one
before "key rotate" works.`,
		Example: `  hsmpool key rotation-policy set k1 --after-create P90D --expiry P1Y
  hsmpool key rotation-policy get k1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newRotationPolicyGetCmd(), newRotationPolicySetCmd(&rotationPolicyOptions{}))
	return cmd
}

// printPolicy prints a rotation policy, unless err is not nil; it returns err then.
func (s *session) printPolicy(p azkeys.KeyRotationPolicy, err error) error {
	if err != nil {
		return err
	}
	return s.print(p, func(w io.Writer) error { return printRotationPolicy(w, p) })
}

// printRotationPolicy writes a rotation policy's human form: one line per action, "rotate: after create P90D".
func printRotationPolicy(w io.Writer, p azkeys.KeyRotationPolicy) error {
	var l fieldList
	l.add("id", deref(p.ID))
	if p.Attributes != nil {
		l.add("expiry", deref(p.Attributes.ExpiryTime))
		l.add("created", formatTime(p.Attributes.Created))
		l.add("updated", formatTime(p.Attributes.Updated))
	}
	for _, a := range p.LifetimeActions {
		if a == nil || a.Action == nil || a.Trigger == nil {
			continue
		}
		var when []string
		if t := deref(a.Trigger.TimeAfterCreate); t != "" {
			when = append(when, "after create "+t)
		}
		if t := deref(a.Trigger.TimeBeforeExpiry); t != "" {
			when = append(when, "before expiry "+t)
		}
		l.add(strings.ToLower(string(deref(a.Action.Type))), strings.Join(when, ", "))
	}
	if len(l) == 0 || (len(l) == 1 && l[0][0] == "id") {
		l.add("rotate", "never (no policy)")
	}
	return l.write(w)
}

// newRotationPolicyGetCmd builds "hsmpool key rotation-policy get".
func newRotationPolicyGetCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "get NAME",
		Short:   "Show a key's rotation policy",
		Long:    `get prints a key's rotation policy: when it rotates, and how long new versions are valid.`,
		Example: `  hsmpool key rotation-policy get k1`,
		Args:    keyNameArg,
	}
	return defaultPoolOptions().command(cmd, true, nil, func(s *session, args []string) error {
		r, err := s.client.Keys().GetKeyRotationPolicy(s.ctx, args[0], nil)
		return s.printPolicy(r.KeyRotationPolicy, err)
	})
}

// rotationPolicyOptions are the flags of "hsmpool key rotation-policy set".
type rotationPolicyOptions struct {
	AfterCreate, BeforeExpiry, Expiry string

	policy azkeys.KeyRotationPolicy // made by validate
}

// validate checks the flags and makes the policy; errors name the flag.
func (o *rotationPolicyOptions) validate() error {
	if (o.AfterCreate == "") == (o.BeforeExpiry == "") {
		return errors.New("give --after-create or --before-expiry, one of them: when the key rotates")
	}
	trigger := &azkeys.LifetimeActionTrigger{}
	if o.AfterCreate != "" {
		if err := checkDuration("--after-create", o.AfterCreate); err != nil {
			return err
		}
		trigger.TimeAfterCreate = &o.AfterCreate
	} else {
		if err := checkDuration("--before-expiry", o.BeforeExpiry); err != nil {
			return err
		}
		if o.Expiry == "" {
			return errors.New("--before-expiry needs --expiry: how long a new version is valid")
		}
		trigger.TimeBeforeExpiry = &o.BeforeExpiry
	}
	o.policy = azkeys.KeyRotationPolicy{
		LifetimeActions: []*azkeys.LifetimeAction{{
			Action:  &azkeys.LifetimeActionType{Type: new(azkeys.KeyRotationPolicyActionRotate)},
			Trigger: trigger,
		}},
		Attributes: &azkeys.KeyRotationPolicyAttributes{},
	}
	if o.Expiry != "" {
		if err := checkDuration("--expiry", o.Expiry); err != nil {
			return err
		}
		o.policy.Attributes.ExpiryTime = &o.Expiry
	}
	return nil
}

// newRotationPolicySetCmd builds "hsmpool key rotation-policy set".
func newRotationPolicySetCmd(opts *rotationPolicyOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "set NAME (--after-create DURATION | --before-expiry DURATION) [--expiry DURATION]",
		Short: "Set a key's rotation policy",
		Long: `set replaces a key's rotation policy with one that rotates the key a time after each
version is created (--after-create) or a time before it expires (--before-expiry,
which needs --expiry). --expiry sets how long new versions are valid. Durations are
ISO 8601: P90D (90 days), P3M, P1Y, PT48H; the pool wants at least 28 days.`,
		Example: `  hsmpool key rotation-policy set k1 --after-create P90D
  hsmpool key rotation-policy set k1 --before-expiry P30D --expiry P1Y`,
		Args: keyNameArg,
	}
	f := cmd.Flags()
	f.StringVar(&opts.AfterCreate, "after-create", opts.AfterCreate, "rotate this long after a version is created (ISO 8601, e.g. P90D)")
	f.StringVar(&opts.BeforeExpiry, "before-expiry", opts.BeforeExpiry, "rotate this long before a version expires (ISO 8601, e.g. P30D)")
	f.StringVar(&opts.Expiry, "expiry", opts.Expiry, "new versions expire this long after they are created (ISO 8601, e.g. P1Y)")
	return defaultPoolOptions().command(cmd, true, func([]string) error { return opts.validate() }, func(s *session, args []string) error {
		r, err := s.client.Keys().UpdateKeyRotationPolicy(s.ctx, args[0], opts.policy, nil)
		return s.printPolicy(r.KeyRotationPolicy, err)
	})
}
