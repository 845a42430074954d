// Command cordon runs AI coding agents in a sandbox whose only way out is a
// credential-injecting proxy on the host.
package main

import (
	"os"

	"github.com/cordon-dev/cordon/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
