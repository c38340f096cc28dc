package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestRender checks that the CLI prints exactly what the renderer's golden
// files hold (the controller applies the same plans) and its exit codes.
func TestRender(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string // golden file the output must equal, or a substring of stderr
	}{
		{[]string{"-f", "../../internal/render/envoygateway/testdata/gateway-jwt.yaml"}, exitClean, "../../internal/render/envoygateway/testdata/gateway-jwt.golden"},
		{[]string{"-f", "../../internal/render/envoygateway/testdata/dryrun-conflict.yaml"}, exitViolations, "../../internal/render/envoygateway/testdata/dryrun-conflict.golden"},
		{[]string{"--gateway", "gateway-api", "-f", "../../internal/render/gatewayapi/testdata/gateway-jwt.yaml"}, exitClean, "../../internal/render/gatewayapi/testdata/gateway-jwt.golden"},
		{[]string{"--gateway", "nginx", "-f", "x.yaml"}, exitBadInput, `unknown gateway "nginx"`},
		{[]string{"-f", "-"}, exitBadInput, "no APIPolicy"},
		{[]string{"-f", "testdata/check/parse-error"}, exitBadInput, "not valid YAML"},
		{[]string{}, exitBadInput, "give manifests with -f"},
		{[]string{"-f", "testdata/check/unknown-apiwarden-version"}, exitBadInput, "apiwarden.io/v1beta1 APIPolicy is not a kind or version this apiwarden reads"},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"render"}, tc.args...), strings.NewReader(""), &out, &errb)
		if code != tc.code {
			t.Errorf("render %v: exit %d, want %d; stderr: %s", tc.args, code, tc.code, errb.String())
			continue
		}
		if strings.HasSuffix(tc.want, ".golden") {
			want, err := os.ReadFile(tc.want)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), want) {
				t.Errorf("render %v: output differs from %s:\n%s", tc.args, tc.want, out.String())
			}
		} else if !strings.Contains(errb.String(), tc.want) {
			t.Errorf("render %v: stderr %q does not contain %q", tc.args, errb.String(), tc.want)
		}
	}
}
