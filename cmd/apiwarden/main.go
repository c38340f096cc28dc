// Command apiwarden is the apiwarden CLI. It runs apiwarden's checks offline
// on manifests, for CI and GitOps, with the same engine as the admission
// webhook.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/apiwarden/apiwarden/internal/version"
)

const usage = `apiwarden — API security checks for Kubernetes

Usage:
  apiwarden check -f FILE|DIR|- [flags]   Check manifests offline (apiwarden check -h).
  apiwarden render -f FILE|DIR|- [flags]  Print what APIPolicies become for a gateway (apiwarden render -h).
  apiwarden coverage [flags]              What the live cluster exposes and how it is protected (apiwarden coverage -h).
  apiwarden version                       Print the version.
  apiwarden help                          Print this help.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes the CLI and returns the process exit code: 0 on success, 2 on
// a usage error.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "check":
		return runCheck(args[1:], stdin, stdout, stderr)
	case "render":
		return runRender(args[1:], stdin, stdout, stderr)
	case "coverage":
		return runCoverage(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "apiwarden %s\n", version.Version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "apiwarden: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}
