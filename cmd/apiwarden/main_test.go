package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	cases := []struct {
		args     []string
		code     int
		stdout   string
		stderrIn string
	}{
		{args: []string{"version"}, code: 0, stdout: "apiwarden dev"},
		{args: []string{"help"}, code: 0, stdout: "Usage:"},
		{args: nil, code: 2, stderrIn: "Usage:"},
		{args: []string{"frobnicate"}, code: 2, stderrIn: `unknown command "frobnicate"`},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		if code := run(c.args, strings.NewReader(""), &out, &errOut); code != c.code {
			t.Errorf("%v: exit %d, want %d", c.args, code, c.code)
		}
		if !strings.Contains(out.String(), c.stdout) {
			t.Errorf("%v: stdout %q lacks %q", c.args, out.String(), c.stdout)
		}
		if !strings.Contains(errOut.String(), c.stderrIn) {
			t.Errorf("%v: stderr %q lacks %q", c.args, errOut.String(), c.stderrIn)
		}
	}
}
