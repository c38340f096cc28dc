package exposure

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
)

// DiffCase is one case of the engine's table, decoded, for the apiserver
// differential test of the compiled admission policies (package
// exposure_test).
type DiffCase struct {
	Name       string
	Object     runtime.Object
	Policies   []*apiwardenv1alpha1.APIPolicy
	Baselines  []*apiwardenv1alpha1.APIBaseline
	Namespaces map[string]map[string]string
	Opts       Options
}

// Now is the engine table's clock.
var Now = now

// DiffCases decodes every case of the engine's table.
func DiffCases(t testing.TB) []DiffCase {
	var out []DiffCase
	for _, tc := range engineCases {
		c := DiffCase{Name: tc.name, Namespaces: tc.namespaces, Opts: tc.opts}
		c.Object = decode(t, tc.object)[0]
		for _, o := range decode(t, tc.policies) {
			c.Policies = append(c.Policies, o.(*apiwardenv1alpha1.APIPolicy))
		}
		switch tc.baselines {
		case "none":
		case "":
			c.Baselines = append(c.Baselines, decode(t, denyBaseline)[0].(*apiwardenv1alpha1.APIBaseline))
		default:
			for _, o := range decode(t, tc.baselines) {
				c.Baselines = append(c.Baselines, o.(*apiwardenv1alpha1.APIBaseline))
			}
		}
		out = append(out, c)
	}
	return out
}
