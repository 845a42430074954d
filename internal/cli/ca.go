package cli

import (
	"github.com/spf13/cobra"

	"github.com/cordon-dev/cordon/internal/ca"
)

func newCACmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Show cordon's local certificate authority",
		Long: `cordon intercepts TLS with certificates signed by a certificate authority
created on this machine the first time it is needed. Its private key never
leaves cordon's data directory (mode 0600). Sandboxes trust it
automatically; for a standalone proxy, point your client at "cordon ca path".`,
		Args: noArgs,
	}
	cmd.AddCommand(
		&cobra.Command{
			Use:   "path",
			Short: "Print the path of the CA certificate (PEM)",
			Args:  noArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				authority, err := e.ca()
				if err != nil {
					return err
				}
				_, err = e.stdout.Write([]byte(authority.CertPath() + "\n"))
				return err
			},
		},
		&cobra.Command{
			Use:   "export",
			Short: "Print the CA certificate in PEM form",
			Args:  noArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				authority, err := e.ca()
				if err != nil {
					return err
				}
				_, err = e.stdout.Write(authority.CertPEM())
				return err
			},
		},
	)
	return cmd
}

// ca loads the local CA, creating it on first use.
func (e *env) ca() (*ca.CA, error) {
	dirs, err := e.state()
	if err != nil {
		return nil, err
	}
	return ca.LoadOrCreate(dirs.Data)
}
