package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/check")

// TestCheckGolden runs `apiwarden check` on each case under testdata/check:
// args holds the arguments (one per line, paths relative to testdata/check),
// stdin the optional standard input, and want.golden the exit code, stdout
// and stderr. Regenerate with `go test ./cmd/apiwarden -update`.
func TestCheckGolden(t *testing.T) {
	cases, err := os.ReadDir("testdata/check")
	if err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chdir("testdata/check"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chdir(wd) })
	for _, c := range cases {
		if !c.IsDir() {
			continue
		}
		t.Run(c.Name(), func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(c.Name(), "args"))
			if err != nil {
				t.Fatal(err)
			}
			args := append([]string{"check"}, strings.Fields(string(raw))...)
			stdin, _ := os.ReadFile(filepath.Join(c.Name(), "stdin"))
			var out, errOut bytes.Buffer
			code := run(args, bytes.NewReader(stdin), &out, &errOut)
			got := fmt.Sprintf("exit: %d\n--- stdout\n%s--- stderr\n%s", code, out.String(), errOut.String())
			golden := filepath.Join(c.Name(), "want.golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./cmd/apiwarden -update)", err)
			}
			if got != string(want) {
				t.Errorf("output differs from %s:\n--- got\n%s\n--- want\n%s", golden, got, want)
			}
		})
	}
}

// TestCheckExitCodes pins the documented exit codes independently of the
// golden files, so regenerating them cannot hide a change.
func TestCheckExitCodes(t *testing.T) {
	wantCodes := map[string]int{
		"clean": 0, "violations": 1, "parse-error": 2, "sarif": 1, "json": 1, "stdin": 1,
		"warn-baseline": 0, "exemption-expired": 1, "exemption-active": 0,
		"older-versions": 1, "stdin-twice": 2, "unknown-apiwarden-version": 2,
	}
	for name, want := range wantCodes {
		data, err := os.ReadFile(filepath.Join("testdata/check", name, "want.golden"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(data), fmt.Sprintf("exit: %d\n", want)) {
			t.Errorf("%s: want exit %d, golden says %q", name, want, strings.SplitN(string(data), "\n", 2)[0])
		}
	}
}

func TestCheckSARIFShape(t *testing.T) {
	data, err := os.ReadFile("testdata/check/sarif/want.golden")
	if err != nil {
		t.Fatal(err)
	}
	body := strings.SplitN(strings.SplitN(string(data), "--- stdout\n", 2)[1], "--- stderr", 2)[0]
	var log struct {
		Version string `json:"version"`
		Runs    []struct {
			Tool struct {
				Driver struct {
					Name  string `json:"name"`
					Rules []struct {
						ID string `json:"id"`
					} `json:"rules"`
				} `json:"driver"`
			} `json:"tool"`
			Results []struct {
				RuleID    string `json:"ruleId"`
				Level     string `json:"level"`
				Locations []struct {
					PhysicalLocation struct {
						ArtifactLocation struct {
							URI string `json:"uri"`
						} `json:"artifactLocation"`
						Region struct {
							StartLine int `json:"startLine"`
						} `json:"region"`
					} `json:"physicalLocation"`
				} `json:"locations"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal([]byte(body), &log); err != nil {
		t.Fatalf("SARIF output is not JSON: %v", err)
	}
	if log.Version != "2.1.0" || len(log.Runs) != 1 || log.Runs[0].Tool.Driver.Name != "apiwarden" {
		t.Fatalf("not a SARIF 2.1.0 log from apiwarden: %+v", log)
	}
	rules := map[string]bool{}
	for _, r := range log.Runs[0].Tool.Driver.Rules {
		rules[r.ID] = true
	}
	if len(log.Runs[0].Results) == 0 {
		t.Fatal("no results")
	}
	for _, r := range log.Runs[0].Results {
		if !rules[r.RuleID] || r.Level != "error" || len(r.Locations) != 1 || r.Locations[0].PhysicalLocation.Region.StartLine < 1 || r.Locations[0].PhysicalLocation.ArtifactLocation.URI == "" {
			t.Errorf("malformed result %+v", r)
		}
	}
}
