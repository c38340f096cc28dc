package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/apiwarden/apiwarden/internal/coverage"
	"github.com/apiwarden/apiwarden/internal/exposure"
	"github.com/apiwarden/apiwarden/internal/scheme"
)

const coverageUsage = `Usage: apiwarden coverage [flags]
       kubectl apiwarden coverage [flags]   (installed as kubectl-apiwarden)

Reads the live cluster through the kubeconfig and evaluates every exposed
Ingress, Service, Gateway, HTTPRoute and GRPCRoute with the same engine as
the admission webhook and the coverage scan: per namespace, what is
protected, exempt (and until when) and violating (with the codes).

Flags:
`

// coverageReport is the -o json output.
type coverageReport struct {
	Namespaces []namespaceCoverage `json:"namespaces"`
}

type namespaceCoverage struct {
	Name      string           `json:"name"`
	Exposed   int              `json:"exposed"`
	Protected int              `json:"protected"`
	Exempt    int              `json:"exempt"`
	Violating int              `json:"violating"`
	Objects   []objectCoverage `json:"objects"`
}

type objectCoverage struct {
	Kind        string               `json:"kind"`
	Name        string               `json:"name"`
	State       exposure.State       `json:"state"`
	Baselines   []string             `json:"baselines"`
	Violations  []exposure.Violation `json:"violations,omitempty"`
	ExemptUntil *time.Time           `json:"exemptUntil,omitempty"`
}

// coverageForbiddenHint follows a refusal: what the report reads, and the
// roles apiwarden ships for it.
const coverageForbiddenHint = `The report reads the APIBaselines and the namespaces' labels (the ClusterRole
apiwarden-baseline-reader grants both; <release>-apiwarden-baseline-reader
with the Helm chart), and list of Ingresses, Services,
Gateways, HTTPRoutes, GRPCRoutes and APIPolicies in the namespaces it covers
(the built-in view role, with apiwarden's aggregated apiwarden-view, and read
of the Gateway API kinds). See docs/coverage.md.
`

func runCoverage(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("coverage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, coverageUsage); fs.PrintDefaults() }
	kubeconfig := fs.String("kubeconfig", "", "Path to the kubeconfig; defaults to $KUBECONFIG, then ~/.kube/config.")
	kubeContext := fs.String("context", "", "Kubeconfig context to use.")
	namespace := fs.String("n", "", "Only this namespace.")
	own := fs.String("apiwarden-namespace", "apiwarden-system", "apiwarden's own namespace, never governed.")
	output := fs.String("o", "table", "Output format: table or json.")
	timeout := fs.Duration("timeout", 60*time.Second, "Give up after this long.")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitClean
		}
		return exitBadInput
	}
	if fs.NArg() > 0 || (*output != "table" && *output != "json") {
		fmt.Fprintln(stderr, "apiwarden coverage: -o must be table or json, and no arguments are taken")
		return exitBadInput
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = *kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: *kubeContext}).ClientConfig()
	if err != nil {
		fmt.Fprintf(stderr, "apiwarden coverage: loading the kubeconfig: %v\n", err)
		return exitBadInput
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		fmt.Fprintf(stderr, "apiwarden coverage: %v\n", err)
		return exitBadInput
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	now := time.Now()
	// With -n, only that namespace is listed (and the policies of the
	// Gateways its routes attach to), so namespaced read access is enough
	// for everything but the baselines and the namespace itself.
	objs, _, err := coverage.Scan(ctx, c, now, coverage.ScanOptions{OwnNamespace: *own, GatewayAPI: true, Namespace: *namespace})
	if meta.IsNoMatchError(err) {
		objs, _, err = coverage.Scan(ctx, c, now, coverage.ScanOptions{OwnNamespace: *own, Namespace: *namespace})
	}
	if err != nil {
		fmt.Fprintf(stderr, "apiwarden coverage: reading the cluster: %v\n", err)
		if apierrors.IsForbidden(err) {
			fmt.Fprint(stderr, coverageForbiddenHint)
		}
		return exitBadInput
	}
	report := buildCoverage(objs, *namespace)
	if *output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			return exitBadInput
		}
		return exitClean
	}
	writeCoverageTable(stdout, report)
	return exitClean
}

// buildCoverage groups the exposed, governed objects by namespace, in name
// order.
func buildCoverage(objs []coverage.Object, onlyNamespace string) coverageReport {
	byNS := map[string]*namespaceCoverage{}
	for _, o := range objs {
		v := o.Verdict
		if !v.Exposed || len(v.Governed) == 0 || (onlyNamespace != "" && o.Namespace != onlyNamespace) {
			continue
		}
		ns := byNS[o.Namespace]
		if ns == nil {
			ns = &namespaceCoverage{Name: o.Namespace}
			byNS[o.Namespace] = ns
		}
		oc := objectCoverage{Kind: o.Kind, Name: o.Name, State: v.State(), Baselines: v.Governed, Violations: v.Violations}
		if !v.NextExpiry.IsZero() {
			t := v.NextExpiry.UTC()
			oc.ExemptUntil = &t
		}
		ns.Exposed++
		switch oc.State {
		case exposure.StateViolating:
			ns.Violating++
		case exposure.StateExempt:
			ns.Exempt++
		default:
			ns.Protected++
		}
		ns.Objects = append(ns.Objects, oc)
	}
	var r coverageReport
	for _, ns := range byNS {
		sort.Slice(ns.Objects, func(i, j int) bool {
			if ns.Objects[i].Kind != ns.Objects[j].Kind {
				return ns.Objects[i].Kind < ns.Objects[j].Kind
			}
			return ns.Objects[i].Name < ns.Objects[j].Name
		})
		r.Namespaces = append(r.Namespaces, *ns)
	}
	sort.Slice(r.Namespaces, func(i, j int) bool { return r.Namespaces[i].Name < r.Namespaces[j].Name })
	if r.Namespaces == nil {
		r.Namespaces = []namespaceCoverage{}
	}
	return r
}

func writeCoverageTable(w io.Writer, r coverageReport) {
	if len(r.Namespaces) == 0 {
		fmt.Fprintln(w, "No exposed object in a governed namespace.")
		return
	}
	for i, ns := range r.Namespaces {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "Namespace %s: %d exposed, %d protected, %d exempt, %d violating\n", ns.Name, ns.Exposed, ns.Protected, ns.Exempt, ns.Violating)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KIND\tNAME\tSTATE\tBASELINES\tDETAIL")
		for _, o := range ns.Objects {
			detail := ""
			switch {
			case len(o.Violations) > 0:
				codes := make([]string, 0, len(o.Violations))
				for _, v := range o.Violations {
					if !containsString(codes, string(v.Code)) {
						codes = append(codes, string(v.Code))
					}
				}
				detail = strings.Join(codes, ",")
			case o.ExemptUntil != nil:
				detail = "exempt until " + o.ExemptUntil.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", o.Kind, o.Name, o.State, strings.Join(o.Baselines, ","), detail)
		}
		_ = tw.Flush()
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
