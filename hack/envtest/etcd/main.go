// Command etcd is the unmodified etcd server, built from the Go module proxy so
// that envtest works without downloads from release buckets.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
