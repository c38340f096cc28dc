package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/manifest"
	"github.com/apiwarden/apiwarden/internal/render"
	"github.com/apiwarden/apiwarden/internal/render/certmanager"
	"github.com/apiwarden/apiwarden/internal/render/gateways"
)

const renderUsage = `Usage: apiwarden render -f FILE|DIR|- [-f ...] [flags]

Prints what the APIPolicy controller would apply for every APIPolicy in the
input, with the same renderers: the gateway's objects as YAML documents
(kubectl apply -f accepts them), and, as comments, each target's outcome,
what the gateway cannot enforce as asked, and what a DryRun policy would
block. Give the policies' targets (routes, Gateways) in the input too.

Exit status: 0 when every target rendered, 1 when a target was not found,
conflicted or could not be rendered, 2 on bad input.

Flags:
`

func runRender(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("render", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, renderUsage); fs.PrintDefaults() }
	var files stringList
	fs.Var(&files, "f", "A manifest file, a directory (read recursively) or - for standard input; repeatable.")
	gateway := fs.String("gateway", gateways.Default, "Gateway to render for: "+strings.Join(gateways.Names(), " or ")+".")
	namespace := fs.String("namespace", "default", "Namespace of objects that name none, as kubectl apply would use.")
	authzNS := fs.String("authz-namespace", render.DefaultAuthzService.Namespace, "Namespace of apiwarden's authz Service.")
	authzName := fs.String("authz-service", render.DefaultAuthzService.Name, "Name of apiwarden's authz Service.")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitClean
		}
		return exitBadInput
	}
	if len(files) == 0 || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "apiwarden render: give manifests with -f (a file, a directory, or - for standard input)")
		return exitBadInput
	}
	if !stdinAtMostOnce(files) {
		fmt.Fprintln(stderr, "apiwarden render: standard input (-) can be read only once")
		return exitBadInput
	}
	r, err := gateways.Get(*gateway)
	if err != nil {
		fmt.Fprintf(stderr, "apiwarden render: --gateway: %v\n", err)
		return exitBadInput
	}
	docs, err := manifest.ReadPaths(files, stdin)
	if err != nil {
		fmt.Fprintf(stderr, "apiwarden render: %v\n", err)
		return exitBadInput
	}
	var objs []runtime.Object
	var policies []*apiwardenv1alpha1.APIPolicy
	for _, d := range docs {
		if d.Obj == nil {
			if manifest.UnknownAPIWarden(d.GVK) {
				fmt.Fprintf(stderr, "apiwarden render: %s:%d: %s %s is not a kind or version this apiwarden reads (%s APIBaseline, APIPolicy, APIKeySet)\n",
					d.File, d.Line, d.GVK.GroupVersion().String(), d.GVK.Kind, apiwardenv1alpha1.GroupVersion.String())
				return exitBadInput
			}
			continue
		}
		objs = append(objs, d.Obj)
		if p, ok := d.Obj.(*apiwardenv1alpha1.APIPolicy); ok {
			policies = append(policies, p)
		}
	}
	if len(policies) == 0 {
		fmt.Fprintln(stderr, "apiwarden render: the input holds no APIPolicy")
		return exitBadInput
	}
	lk := render.NewManifestLookup(objs, *namespace)
	sort.SliceStable(policies, func(i, j int) bool {
		if policies[i].Namespace != policies[j].Namespace {
			return policies[i].Namespace < policies[j].Namespace
		}
		return policies[i].Name < policies[j].Name
	})
	authz := render.AuthzService{Namespace: *authzNS, Name: *authzName, GRPCPort: render.DefaultAuthzService.GRPCPort, HTTPPort: render.DefaultAuthzService.HTTPPort}
	code := exitClean
	for _, p := range policies {
		plans, err := render.Plan(p, lk, r, authz)
		if err != nil {
			fmt.Fprintf(stderr, "apiwarden render: %v\n", err)
			return exitBadInput
		}
		if err := render.WriteYAML(stdout, p, plans); err != nil {
			fmt.Fprintf(stderr, "apiwarden render: %v\n", err)
			return exitBadInput
		}
		if err := certmanager.WriteYAML(stdout, p, lk); err != nil {
			fmt.Fprintf(stderr, "apiwarden render: %v\n", err)
			return exitBadInput
		}
		for _, tp := range plans {
			if tp.Outcome != render.OutcomeRendered && tp.Outcome != render.OutcomeUnsupported {
				code = exitViolations
			}
		}
	}
	return code
}
