package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/exposure"
	"github.com/apiwarden/apiwarden/internal/manifest"
	"github.com/apiwarden/apiwarden/internal/version"
)

// Exit codes of `apiwarden check`.
const (
	exitClean      = 0
	exitViolations = 1
	exitBadInput   = 2
)

const checkUsage = `Usage: apiwarden check -f FILE|DIR|- [-f ...] [--baseline FILE] [-o text|json|sarif]

Checks manifests offline with the same engine as apiwarden's admission
webhook. APIBaselines and APIPolicies found in the input (or given with
--baseline) are used; with no APIBaseline, a default one requires TLS,
authentication and a rate limit, and denies.

Exit codes: 0 clean (or only Warn/Audit findings), 1 violations at Deny
level, 2 unreadable input, a governed kind in a version apiwarden cannot
read, or a usage error.

Flags:
`

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// finding is one violation located in the input.
type finding struct {
	File      string `json:"file"`
	Line      int    `json:"line"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	exposure.Violation
}

func runCheck(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, checkUsage); fs.PrintDefaults() }
	var files, baselineFiles stringList
	fs.Var(&files, "f", "A manifest file, a directory (read recursively) or - for standard input; repeatable.")
	fs.Var(&baselineFiles, "baseline", "A file of APIBaselines to check against, in addition to those in the input; repeatable.")
	output := fs.String("o", "text", "Output format: text, json or sarif.")
	namespace := fs.String("namespace", "default", "Namespace of objects that name none, as kubectl apply would use.")
	nowFlag := fs.String("now", "", "Evaluate exemptions at this RFC 3339 time instead of the current time.")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitClean
		}
		return exitBadInput
	}
	if len(files) == 0 || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "apiwarden check: give manifests with -f (a file, a directory, or - for standard input)")
		return exitBadInput
	}
	if *output != "text" && *output != "json" && *output != "sarif" {
		fmt.Fprintf(stderr, "apiwarden check: -o %q: want text, json or sarif\n", *output)
		return exitBadInput
	}
	now := time.Now()
	if *nowFlag != "" {
		t, err := time.Parse(time.RFC3339, *nowFlag)
		if err != nil {
			fmt.Fprintf(stderr, "apiwarden check: --now: %v\n", err)
			return exitBadInput
		}
		now = t
	}

	if !stdinAtMostOnce(files, baselineFiles) {
		fmt.Fprintln(stderr, "apiwarden check: standard input (-) can be read only once")
		return exitBadInput
	}
	objs, err := manifest.ReadPaths(files, stdin)
	if err != nil {
		fmt.Fprintf(stderr, "apiwarden check: %v\n", err)
		return exitBadInput
	}
	extra, err := manifest.ReadPaths(baselineFiles, stdin)
	if err != nil {
		fmt.Fprintf(stderr, "apiwarden check: %v\n", err)
		return exitBadInput
	}

	var baselines []*apiwardenv1alpha1.APIBaseline
	var policies []*apiwardenv1alpha1.APIPolicy
	namespaces := map[string]map[string]string{}
	var subjects []manifest.Object
	unevaluated := false
	for _, o := range append(objs, extra...) {
		if o.Obj == nil {
			if manifest.UnknownAPIWarden(o.GVK) {
				fmt.Fprintf(stderr, "apiwarden check: %s:%d: %s %s is not a kind or version this apiwarden reads (%s APIBaseline, APIPolicy, APIKeySet); the verdicts would be wrong without it\n",
					o.File, o.Line, o.GVK.GroupVersion().String(), o.GVK.Kind, apiwardenv1alpha1.GroupVersion.String())
				return exitBadInput
			}
			if manifest.Unevaluated(o.GVK) {
				fmt.Fprintf(stderr, "apiwarden check: %s:%d: %s is not evaluated: apiwarden reads %s; convert it, or the cluster's webhook will judge it\n",
					o.File, o.Line, o.GVK.GroupVersion().String()+" "+o.GVK.Kind, "Ingress networking.k8s.io/v1 and Gateway API v1")
				unevaluated = true
			}
			continue
		}
		if m, ok := o.Obj.(metav1.Object); ok && m.GetNamespace() == "" && o.GVK.Kind != "Namespace" && o.GVK.Kind != "APIBaseline" {
			m.SetNamespace(*namespace)
		}
		switch x := o.Obj.(type) {
		case *apiwardenv1alpha1.APIBaseline:
			baselines = append(baselines, x)
		case *apiwardenv1alpha1.APIPolicy:
			policies = append(policies, x)
		case *corev1.Namespace:
			labels := map[string]string{"kubernetes.io/metadata.name": x.Name}
			for k, v := range x.Labels {
				labels[k] = v
			}
			namespaces[x.Name] = labels
		default:
			if exposure.Supported(o.Obj) {
				subjects = append(subjects, o)
			}
		}
	}
	if len(baselines) == 0 {
		baselines = []*apiwardenv1alpha1.APIBaseline{defaultBaseline()}
	}
	snap := exposure.NewMemorySnapshot(baselines, policies, namespaces)
	opts := exposure.Options{UnknownNamespacesGoverned: true}

	var findings []finding
	denied := false
	for _, o := range subjects {
		v, err := exposure.Evaluate(o.Obj, snap, now, opts)
		if err != nil {
			fmt.Fprintf(stderr, "apiwarden check: %s:%d: %v\n", o.File, o.Line, err)
			return exitBadInput
		}
		m := o.Obj.(metav1.Object)
		for _, x := range v.Violations {
			if x.Action == apiwardenv1alpha1.EnforcementActionDeny {
				denied = true
			}
			findings = append(findings, finding{File: o.File, Line: o.Line, Kind: o.GVK.Kind, Namespace: m.GetNamespace(), Name: m.GetName(), Violation: x})
		}
	}

	switch *output {
	case "json":
		err = writeJSON(stdout, findings, len(subjects))
	case "sarif":
		err = writeSARIF(stdout, findings)
	default:
		writeText(stdout, findings, len(subjects))
	}
	if err != nil {
		fmt.Fprintf(stderr, "apiwarden check: writing output: %v\n", err)
		return exitBadInput
	}
	if denied {
		return exitViolations
	}
	if unevaluated {
		// Something that may expose an API was not checked: not clean.
		return exitBadInput
	}
	return exitClean
}

// defaultBaseline is used when the input has no APIBaseline: TLS 1.2+,
// authentication by any method, a rate limit, denied otherwise.
func defaultBaseline() *apiwardenv1alpha1.APIBaseline {
	return &apiwardenv1alpha1.APIBaseline{
		ObjectMeta: metav1.ObjectMeta{Name: "apiwarden-default"},
		Spec:       apiwardenv1alpha1.APIBaselineSpec{EnforcementAction: apiwardenv1alpha1.EnforcementActionDeny},
	}
}

func writeText(w io.Writer, fs []finding, checked int) {
	for _, f := range fs {
		fmt.Fprintf(w, "%s:%d %s %s/%s %s: %s\n", f.File, f.Line, f.Kind, f.Namespace, f.Name, f.Code, f.Text())
	}
	fmt.Fprintf(w, "%d object(s) checked, %d violation(s)\n", checked, len(fs))
}

func writeJSON(w io.Writer, fs []finding, checked int) error {
	if fs == nil {
		fs = []finding{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Checked    int       `json:"checked"`
		Violations []finding `json:"violations"`
	}{checked, fs})
}

// SARIF 2.1.0, the subset GitHub code scanning reads.
type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool    sarifTool     `json:"tool"`
	Results []sarifResult `json:"results"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	Version        string      `json:"version"`
	InformationURI string      `json:"informationUri"`
	Rules          []sarifRule `json:"rules"`
}

type sarifRule struct {
	ID               string       `json:"id"`
	ShortDescription sarifMessage `json:"shortDescription"`
}

type sarifMessage struct {
	Text string `json:"text"`
}

type sarifResult struct {
	RuleID    string          `json:"ruleId"`
	Level     string          `json:"level"`
	Message   sarifMessage    `json:"message"`
	Locations []sarifLocation `json:"locations"`
}

type sarifLocation struct {
	PhysicalLocation sarifPhysical `json:"physicalLocation"`
}

type sarifPhysical struct {
	ArtifactLocation sarifArtifact `json:"artifactLocation"`
	Region           sarifRegion   `json:"region"`
}

type sarifArtifact struct {
	URI string `json:"uri"`
}

type sarifRegion struct {
	StartLine int `json:"startLine"`
}

func writeSARIF(w io.Writer, fs []finding) error {
	rules := map[string]bool{}
	results := []sarifResult{}
	for _, f := range fs {
		rules[string(f.Code)] = true
		level := "error"
		switch f.Action {
		case apiwardenv1alpha1.EnforcementActionWarn:
			level = "warning"
		case apiwardenv1alpha1.EnforcementActionAudit:
			level = "note"
		}
		line := f.Line
		if line < 1 {
			line = 1
		}
		results = append(results, sarifResult{
			RuleID: string(f.Code), Level: level,
			Message: sarifMessage{Text: f.Text()},
			Locations: []sarifLocation{{PhysicalLocation: sarifPhysical{
				ArtifactLocation: sarifArtifact{URI: strings.TrimPrefix(f.File, "./")},
				Region:           sarifRegion{StartLine: line},
			}}},
		})
	}
	ids := make([]string, 0, len(rules))
	for id := range rules {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	driver := sarifDriver{Name: "apiwarden", Version: version.Version, InformationURI: "https://github.com/apiwarden/apiwarden", Rules: []sarifRule{}}
	for _, id := range ids {
		driver.Rules = append(driver.Rules, sarifRule{ID: id, ShortDescription: sarifMessage{Text: exposure.Code(id).Description()}})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(sarifLog{
		Schema:  "https://json.schemastore.org/sarif-2.1.0.json",
		Version: "2.1.0",
		Runs:    []sarifRun{{Tool: sarifTool{Driver: driver}, Results: results}},
	})
}

// stdinAtMostOnce reports whether standard input ("-") is named at most once
// in the given file lists: it can be read only once.
func stdinAtMostOnce(lists ...[]string) bool {
	n := 0
	for _, l := range lists {
		for _, f := range l {
			if f == "-" {
				n++
			}
		}
	}
	return n <= 1
}
