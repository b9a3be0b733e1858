package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hsmpool/hsmpool/pkg/client"
)

// newPrincipalCmd builds "hsmpool principal", the pool's own service principals, through pkg/client.
func newPrincipalCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "principal",
		Short: "Manage the pool's service principals and their credentials",
		Long: `principal manages the pool's own service principals: the identities that sign in to
the pool's token endpoint with a client ID and a client secret, or a certificate. A
principal may do nothing until a role is assigned to it ("hsmpool role assignment
create"), by its object ID.

Azure has no such API (Entra ID manages principals there): these commands use the
pool's own /principals endpoints. A new client secret is shown once, when it is made;
the pool keeps only its hash. "create --client-file-out FILE" writes it straight into
a client file for the new principal instead.

Commands take a principal by its object ID or its client ID.`,
		Example: `  export HSMPOOL_CLIENT_FILE=.data/client.json
  hsmpool principal create --name payments-app --client-file-out payments.json
  hsmpool role assignment create --role "Managed HSM Crypto User" --principal OBJECT_ID --scope /keys/k1
  hsmpool principal list`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	secret := &cobra.Command{Use: "secret", Short: "Manage a principal's client secrets", Args: cobra.NoArgs,
		Long:    `secret adds client secrets to a principal; "principal credential remove" removes them.`,
		Example: `  hsmpool principal secret add OBJECT_ID --expires 90d`,
		RunE:    func(cmd *cobra.Command, _ []string) error { return cmd.Help() }}
	secret.AddCommand(newPrincipalSecretAddCmd(&principalSecretOptions{}))
	cert := &cobra.Command{Use: "cert", Short: "Manage a principal's certificates", Args: cobra.NoArgs,
		Long:    `cert adds certificates to a principal; "principal credential remove" removes them.`,
		Example: `  hsmpool principal cert add OBJECT_ID --cert app.pem`,
		RunE:    func(cmd *cobra.Command, _ []string) error { return cmd.Help() }}
	cert.AddCommand(newPrincipalCertAddCmd(&principalCertOptions{}))
	credential := &cobra.Command{Use: "credential", Short: "Remove a principal's secrets and certificates", Args: cobra.NoArgs,
		Long:    `credential removes a secret or a certificate from a principal, by the ID that "principal show" lists.`,
		Example: `  hsmpool principal credential remove OBJECT_ID CREDENTIAL_ID`,
		RunE:    func(cmd *cobra.Command, _ []string) error { return cmd.Help() }}
	credential.AddCommand(newPrincipalCredentialRemoveCmd())
	cmd.AddCommand(
		newPrincipalCreateCmd(&principalCreateOptions{}),
		newPrincipalListCmd(),
		newPrincipalIDCmd("show", "Show a principal and its credentials",
			`show prints a principal: its object ID, client ID, name, and one line per credential.`,
			func(s *session, id string) (*client.Principal, error) { return s.client.Principals().Get(s.ctx, id) }),
		newPrincipalIDCmd("delete", "Delete a principal",
			`delete deletes a principal: its credentials stop working at once. It prints the deleted
principal. Its role assignments stay until they are deleted ("hsmpool role assignment
list --principal OBJECT_ID" finds them).`,
			func(s *session, id string) (*client.Principal, error) { return s.client.Principals().Delete(s.ctx, id) }),
		secret,
		cert,
		credential,
	)
	return cmd
}

// idArgs returns a cobra.PositionalArgs that wants one ID per name in names, each free of "/" and spaces; errors
// show the usage line.
func idArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return fmt.Errorf("want %s: %s", strings.Join(names, " and "), cmd.UseLine())
		}
		for i, a := range args {
			if a == "" || strings.ContainsAny(a, "/\\?# \t") {
				return fmt.Errorf("%s %q: want an ID", names[i], a)
			}
		}
		return nil
	}
}

// newPrincipalIDCmd builds "hsmpool principal VERB ID" for a verb that takes nothing but the principal and prints
// the principal that do returns.
func newPrincipalIDCmd(verb, short, long string, do func(s *session, id string) (*client.Principal, error)) *cobra.Command {
	cmd := &cobra.Command{
		Use:     verb + " ID",
		Short:   short,
		Long:    long + "\n\nID is the principal's object ID or client ID.",
		Example: "  hsmpool principal " + verb + " 3f2b8c1e-5a0d-4c5e-9d1a-6b7e8f9a0b1c",
		Args:    idArgs("a principal's object ID or client ID"),
	}
	return defaultPoolOptions().command(cmd, true, nil, func(s *session, args []string) error {
		p, err := do(s, args[0])
		if err != nil {
			return err
		}
		return s.print(p, func(w io.Writer) error { return printPrincipal(w, p) })
	})
}

// parseLifetime parses the value of flag, a lifetime such as 90d, 720h or 1h30m: a number of days with "d", or a
// Go duration. It must be positive.
func parseLifetime(flag, value string) (time.Duration, error) {
	bad := fmt.Errorf("%s %q: want a positive duration, such as 90d, 720h or 1h30m", flag, value)
	var d time.Duration
	if days, ok := strings.CutSuffix(value, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 || n > 100*366 {
			return 0, bad
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(value); err != nil {
			return 0, bad
		}
	}
	if d < time.Minute {
		return 0, fmt.Errorf("%s %q: want at least a minute", flag, value)
	}
	return d, nil
}

// principalCreateOptions are the flags of "hsmpool principal create".
type principalCreateOptions struct {
	Name          string
	NoSecret      bool
	SecretExpires string
	ClientFileOut string

	opts client.CreatePrincipalOptions // made by validate
}

// validate checks the flags; errors name the flag. It refuses a --client-file-out that exists now, before the
// principal is made, so that the secret is not made for nothing.
func (o *principalCreateOptions) validate() error {
	if strings.TrimSpace(o.Name) == "" {
		return errors.New("--name is required: the principal's display name")
	}
	o.opts = client.CreatePrincipalOptions{NoSecret: o.NoSecret}
	if o.SecretExpires != "" {
		if o.NoSecret {
			return errors.New("--secret-expires: --no-secret makes no secret")
		}
		d, err := parseLifetime("--secret-expires", o.SecretExpires)
		if err != nil {
			return err
		}
		o.opts.SecretExpires = time.Now().Add(d)
	}
	if o.ClientFileOut != "" {
		if o.NoSecret {
			return errors.New("--client-file-out: --no-secret makes no secret to put in a client file")
		}
		return checkNewFile("--client-file-out", o.ClientFileOut)
	}
	return nil
}

// checkNewFile checks that path, the value of flag, does not exist and that its directory does.
func checkNewFile(flag, path string) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s %s: the file exists; it is never overwritten", flag, path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: %w", flag, err)
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || !fi.IsDir() {
		return fmt.Errorf("%s %s: no directory %s", flag, path, filepath.Dir(path))
	}
	return nil
}

// newPrincipalCreateCmd builds "hsmpool principal create".
func newPrincipalCreateCmd(opts *principalCreateOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "create --name NAME [--no-secret] [--secret-expires DURATION] [--client-file-out FILE]",
		Short: "Create a service principal",
		Long: `create makes a service principal and prints its object ID (what role assignments
name) and client ID (what it signs in with), with its first client secret.

The secret is shown once: the pool keeps only its hash. With --client-file-out FILE
it is not printed but written, with the pool's URL, tenant, authority and CA from the
current client file, into FILE (mode 0600; an existing file is never overwritten): a
client file the new principal can use at once, once it holds a role.

--secret-expires bounds the secret's life (90d, 720h...; the default is no expiry);
--no-secret makes a principal without one, for one that will sign in with a
certificate ("principal cert add").`,
		Example: `  hsmpool principal create --name payments-app --client-file-out payments.json
  hsmpool principal create --name ci --secret-expires 30d
  hsmpool principal create --name signer --no-secret -o json`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.StringVar(&opts.Name, "name", opts.Name, "the principal's display name (required)")
	f.BoolVar(&opts.NoSecret, "no-secret", opts.NoSecret, "make no client secret")
	f.StringVar(&opts.SecretExpires, "secret-expires", opts.SecretExpires, "the secret expires after this long: 90d, 720h... (default never)")
	f.StringVar(&opts.ClientFileOut, "client-file-out", opts.ClientFileOut, "write a client file for the new principal here (0600), instead of printing the secret")
	po := defaultPoolOptions()
	return po.command(cmd, true, func([]string) error { return opts.validate() }, func(s *session, _ []string) error {
		var current *client.File
		if opts.ClientFileOut != "" {
			var err error
			if current, err = client.Load(po.ClientFile); err != nil { // connect read it just now
				return err
			}
		}
		p, err := s.client.Principals().Create(s.ctx, opts.Name, &opts.opts)
		if err != nil {
			return err
		}
		if current != nil {
			if err := client.WriteFile(opts.ClientFileOut, current.ForPrincipal(p.ClientID, p.Secret)); err != nil {
				// The principal exists and its secret is nowhere else: show it rather than lose it.
				_ = s.printNewSecret(p, true)
				return withHints(err, "the principal was made; its secret is printed above, once")
			}
			fmt.Fprintf(s.errOut, "hsmpool: wrote %s, a client file for %s (client ID %s); it holds the secret\n",
				opts.ClientFileOut, p.DisplayName, p.ClientID)
			return s.printNewSecret(p, false)
		}
		return s.printNewSecret(p, !opts.NoSecret)
	})
}

// principalWithSecret is a principal as -o json prints it when the command shows a new secret: the REST API's JSON,
// the secret in the clear.
type principalWithSecret struct {
	*client.Principal
	Secret string `json:"secret,omitempty"` // shadows Principal.Secret, which marshals as "[REDACTED]"
}

// printNewSecret prints p, a principal from an answer that made a secret, with the secret if reveal.
func (s *session) printNewSecret(p *client.Principal, reveal bool) error {
	v := principalWithSecret{Principal: p}
	if reveal {
		v.Secret = p.Secret.Reveal()
	}
	err := s.print(v, func(w io.Writer) error {
		var l fieldList
		l.add("object id", p.ObjectID)
		l.add("client id", p.ClientID)
		l.add("name", p.DisplayName)
		l.add("secret id", p.SecretID)
		if exp := secretExpiry(p); exp != "" && p.SecretID != "" {
			l.add("secret expires", exp)
		}
		l.add("secret", v.Secret)
		return l.write(w)
	})
	if reveal && v.Secret != "" && err == nil {
		fmt.Fprintln(s.errOut, "hsmpool: the pool shows this secret only once: store it now")
	}
	return err
}

// secretExpiry is when p's new secret (p.SecretID) expires, "never", or "" when p does not list it.
func secretExpiry(p *client.Principal) string {
	for _, c := range p.Credentials {
		if c.ID == p.SecretID {
			return formatUnix(c.Expires, "never")
		}
	}
	return ""
}

// formatUnix is t, Unix seconds, in RFC 3339; zero for 0.
func formatUnix(t int64, zero string) string {
	if t == 0 {
		return zero
	}
	return time.Unix(t, 0).UTC().Format(time.RFC3339)
}

// printPrincipal writes a principal's human form: its fields, then a table of its credentials.
func printPrincipal(w io.Writer, p *client.Principal) error {
	var l fieldList
	l.add("object id", p.ObjectID)
	l.add("client id", p.ClientID)
	l.add("name", p.DisplayName)
	l.add("created", formatUnix(p.Created, ""))
	l.add("credentials", credentialSummary(p.Credentials))
	if err := l.write(w); err != nil {
		return err
	}
	if len(p.Credentials) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CREDENTIAL\tTYPE\tCREATED\tEXPIRES\tTHUMBPRINT\tSUBJECT")
	for _, c := range p.Credentials {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.Type, formatUnix(c.Created, "-"), formatUnix(c.Expires, "never"),
			dash(c.Thumbprint), dash(c.Subject))
	}
	return tw.Flush()
}

// credentialSummary counts credentials by type: "2 secrets, 1 certificate", or "none".
func credentialSummary(creds []client.Credential) string {
	var secrets, certs int
	for _, c := range creds {
		switch c.Type {
		case client.CredentialSecret:
			secrets++
		case client.CredentialCertificate:
			certs++
		}
	}
	var parts []string
	if secrets > 0 {
		parts = append(parts, plural(secrets, "secret"))
	}
	if certs > 0 {
		parts = append(parts, plural(certs, "certificate"))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// dash is s, or "-" when it is empty, for a table cell.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printPrincipalRows writes a table of principals, one line each.
func printPrincipalRows(w io.Writer, ps []client.Principal) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "OBJECT ID\tCLIENT ID\tCREATED\tCREDENTIALS\tNAME")
	for _, p := range ps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.ObjectID, p.ClientID, formatUnix(p.Created, "-"), credentialSummary(p.Credentials), p.DisplayName)
	}
	return tw.Flush()
}

// newPrincipalListCmd builds "hsmpool principal list".
func newPrincipalListCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the pool's principals",
		Long: `list prints one line per principal: object ID, client ID, when it was made, how many
secrets and certificates it has, and its name. With -o json it prints the principals
as the pool returns them.`,
		Example: `  hsmpool principal list
  hsmpool principal list -o json`,
		Args: cobra.NoArgs,
	}
	return defaultPoolOptions().command(cmd, true, nil, func(s *session, _ []string) error {
		ps, err := s.client.Principals().List(s.ctx)
		if err != nil {
			return err
		}
		if ps == nil {
			ps = []client.Principal{}
		}
		return s.print(ps, func(w io.Writer) error { return printPrincipalRows(w, ps) })
	})
}

// principalSecretOptions are the flags of "hsmpool principal secret add".
type principalSecretOptions struct {
	Expires string

	opts client.AddSecretOptions // made by validate
}

func (o *principalSecretOptions) validate() error {
	o.opts = client.AddSecretOptions{}
	if o.Expires != "" {
		d, err := parseLifetime("--expires", o.Expires)
		if err != nil {
			return err
		}
		o.opts.Expires = time.Now().Add(d)
	}
	return nil
}

// newPrincipalSecretAddCmd builds "hsmpool principal secret add".
func newPrincipalSecretAddCmd(opts *principalSecretOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "add ID [--expires DURATION]",
		Short: "Add a client secret to a principal",
		Long: `add makes a new client secret for a principal and prints it, once: the pool keeps only
its hash. The principal's other secrets keep working until they are removed
("principal credential remove"), so a secret can be rotated without a pause.

ID is the principal's object ID or client ID. --expires bounds the secret's life (90d,
720h...; the default is no expiry).`,
		Example: `  hsmpool principal secret add 3f2b8c1e-5a0d-4c5e-9d1a-6b7e8f9a0b1c --expires 90d`,
		Args:    idArgs("a principal's object ID or client ID"),
	}
	cmd.Flags().StringVar(&opts.Expires, "expires", opts.Expires, "the secret expires after this long: 90d, 720h... (default never)")
	return defaultPoolOptions().command(cmd, true, func([]string) error { return opts.validate() }, func(s *session, args []string) error {
		p, err := s.client.Principals().AddSecret(s.ctx, args[0], &opts.opts)
		if err != nil {
			return err
		}
		return s.printNewSecret(p, true)
	})
}

// principalCertOptions are the flags of "hsmpool principal cert add".
type principalCertOptions struct {
	Cert string

	der []byte // read by validate
}

// maxCertFile bounds what --cert reads: a certificate is a few kilobytes.
const maxCertFile = 64 << 10

// validate reads --cert: one certificate, PEM or DER; errors name the flag.
func (o *principalCertOptions) validate() error {
	if o.Cert == "" {
		return errors.New("--cert is required: a certificate, PEM or DER")
	}
	b, err := readSmallFile(o.Cert, maxCertFile)
	if err != nil {
		return fmt.Errorf("--cert: %w", err)
	}
	der := b
	if block, rest := pem.Decode(b); block != nil {
		if block.Type != "CERTIFICATE" {
			return fmt.Errorf("--cert %s: a PEM %q block, not a CERTIFICATE", o.Cert, block.Type)
		}
		if next, _ := pem.Decode(rest); next != nil {
			return fmt.Errorf("--cert %s: more than one PEM block; give the principal's certificate alone", o.Cert)
		}
		der = block.Bytes
	}
	if _, err := x509.ParseCertificate(der); err != nil {
		return fmt.Errorf("--cert %s: not a certificate, PEM or DER: %w", o.Cert, err)
	}
	o.der = der
	return nil
}

// readSmallFile reads the file at path, refusing one larger than limit.
func readSmallFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return b, nil
}

// newPrincipalCertAddCmd builds "hsmpool principal cert add".
func newPrincipalCertAddCmd(opts *principalCertOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "add ID --cert FILE.pem|FILE.cer",
		Short: "Add a certificate to a principal",
		Long: `add gives a principal a certificate: the principal may then sign in with a client
assertion (a JWT) signed by the certificate's key, as with Entra ID. The certificate
is PEM or DER; the key stays with the principal. It prints the principal.

ID is the principal's object ID or client ID.`,
		Example: `  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=app \
    -keyout app.key -out app.pem -days 365
  hsmpool principal cert add 3f2b8c1e-5a0d-4c5e-9d1a-6b7e8f9a0b1c --cert app.pem`,
		Args: idArgs("a principal's object ID or client ID"),
	}
	cmd.Flags().StringVar(&opts.Cert, "cert", opts.Cert, "the certificate file, PEM or DER (required)")
	return defaultPoolOptions().command(cmd, true, func([]string) error { return opts.validate() }, func(s *session, args []string) error {
		p, err := s.client.Principals().AddCertificate(s.ctx, args[0], opts.der)
		if err != nil {
			return err
		}
		return s.print(p, func(w io.Writer) error { return printPrincipal(w, p) })
	})
}

// newPrincipalCredentialRemoveCmd builds "hsmpool principal credential remove".
func newPrincipalCredentialRemoveCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "remove ID CREDENTIAL_ID",
		Short: "Remove a secret or certificate from a principal",
		Long: `remove removes a credential, a secret or a certificate, from a principal: it stops
working at once. CREDENTIAL_ID is the credential's ID, as "principal show" lists it.
It prints the principal.

ID is the principal's object ID or client ID.`,
		Example: `  hsmpool principal credential remove 3f2b8c1e-5a0d-4c5e-9d1a-6b7e8f9a0b1c 9c0d1e2f`,
		Args:    idArgs("a principal's object ID or client ID", "a credential ID"),
	}
	return defaultPoolOptions().command(cmd, true, nil, func(s *session, args []string) error {
		p, err := s.client.Principals().RemoveCredential(s.ctx, args[0], args[1])
		if err != nil {
			return err
		}
		return s.print(p, func(w io.Writer) error { return printPrincipal(w, p) })
	})
}
