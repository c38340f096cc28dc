package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/apiwarden/apiwarden/internal/testenv"
)

// bins builds the manager once for every test of the package.
var bins testenv.Binaries

func TestMain(m *testing.M) {
	code := m.Run()
	bins.Remove()
	os.Exit(code)
}

// managerBinary returns the manager built from this tree.
func managerBinary(t *testing.T) string {
	t.Helper()
	return bins.Build(t, "./cmd/manager")
}

// replica is a manager process started by a test.
type replica struct {
	name      string
	cmd       *exec.Cmd
	logs      testenv.Buffer
	exited    chan error
	probeAddr string
}

// startReplica runs the manager binary with args and KUBECONFIG set, and
// kills it when the test ends (printing its output if the test failed).
func startReplica(t *testing.T, name, kubeconfig, probeAddr string, args ...string) *replica {
	t.Helper()
	r := &replica{name: name, exited: make(chan error, 1), probeAddr: probeAddr}
	r.cmd = exec.Command(managerBinary(t), append(args, "--health-probe-bind-address="+probeAddr)...)
	r.cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	r.cmd.Stdout, r.cmd.Stderr = &r.logs, &r.logs
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.exited <- r.cmd.Wait() }()
	t.Cleanup(func() {
		if r.cmd.ProcessState == nil {
			_ = r.cmd.Process.Kill()
			<-r.exited
		}
		if t.Failed() {
			// One line per admission decision would bury the rest.
			var kept []string
			skipped := 0
			for _, line := range strings.Split(r.logs.String(), "\n") {
				if strings.Contains(line, `"msg":"Denied exposed object"`) {
					skipped++
					continue
				}
				kept = append(kept, line)
			}
			t.Logf("%s output (%d denial lines left out):\n%s", r.name, skipped, strings.Join(kept, "\n"))
		}
	})
	return r
}

// readyz returns the replica's /readyz status code, 0 when unreachable.
func (r *replica) readyz() int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.probeAddr+"/readyz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitReady waits for /readyz to answer 200.
func (r *replica) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	waitFor(t, r.exited, timeout, fmt.Sprintf("%s to be ready", r.name), func() bool { return r.readyz() == http.StatusOK })
}

// freeAddrs returns n loopback addresses with free ports.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	out := make([]string, n)
	for i := range out {
		p, err := testenv.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		out[i] = fmt.Sprintf("127.0.0.1:%d", p)
	}
	return out
}
