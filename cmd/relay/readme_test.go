package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// helpFlag is one flag as `relay --help` prints it.
type helpFlag struct{ env, def string }

// helpFlags reads `relay --help`.
func helpFlags(t *testing.T) map[string]helpFlag {
	t.Helper()
	var out bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, env(nil), &out, &out); code != 0 {
		t.Fatalf("--help: exit %d: %s", code, out.String())
	}
	head := regexp.MustCompile(`^  --(\S+)(?:  \(env (\S+)\))?$`)
	def := regexp.MustCompile(`\(default (.*)\)$`)
	flags := map[string]helpFlag{}
	var name string
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		line := sc.Text()
		if m := head.FindStringSubmatch(line); m != nil {
			name = m[1]
			flags[name] = helpFlag{env: m[2]}
			continue
		}
		if name != "" && strings.HasPrefix(line, "        ") {
			if m := def.FindStringSubmatch(line); m != nil {
				f := flags[name]
				f.def = m[1]
				flags[name] = f
			}
			name = ""
		}
	}
	if len(flags) < 40 {
		t.Fatalf("read only %d flags from --help", len(flags))
	}
	return flags
}

// TestREADMEMatchesHelp keeps README.md's flag tables true to `relay
// --help`: every flag --help prints is in a README table and every flag a
// table names exists. A row of the Configuration table (flag, variable,
// default) names one flag, its variable and its default exactly as --help
// prints them ("none" or "empty" for an empty default, whatever follows in
// the cell explaining it); a row of the limit tables ("flag, flag | default,
// default | what a client sees") gives each flag's default first in its
// part of the second cell.
func TestREADMEMatchesHelp(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	help := helpFlags(t)
	ticked := regexp.MustCompile("`([^`]*)`")
	seen := map[string]bool{}
	for _, line := range strings.Split(string(readme), "\n") {
		if !strings.HasPrefix(line, "| `--") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		var names []string
		for _, m := range ticked.FindAllStringSubmatch(cells[0], -1) {
			names = append(names, strings.TrimPrefix(m[1], "--"))
		}
		for _, n := range names {
			seen[n] = true
			if _, ok := help[n]; !ok {
				t.Errorf("README names --%s, which --help does not print", n)
			}
		}
		if len(cells) < 3 {
			t.Errorf("README row %q: too few cells", line)
			continue
		}
		if strings.Contains(cells[1], "RELAY_") { // the Configuration table
			if len(names) != 1 {
				t.Errorf("README configuration row %q: want one flag per row", line)
				continue
			}
			f := help[names[0]]
			if got := strings.Trim(cells[1], "`"); got != f.env {
				t.Errorf("README: --%s has variable %s, --help says %s", names[0], got, f.env)
			}
			got := strings.TrimSpace(cells[2])
			if m := ticked.FindStringSubmatch(got); m != nil && strings.HasPrefix(got, "`") {
				got = m[1]
			}
			switch {
			case f.def == "" && (strings.HasPrefix(got, "none") || strings.HasPrefix(got, "empty")):
			case got != f.def:
				t.Errorf("README: --%s defaults to %q, --help says %q", names[0], got, f.def)
			}
			continue
		}
		parts := strings.Split(cells[1], ", ")
		if len(parts) != len(names) {
			t.Errorf("README limit row %q: %d flags but %d defaults", line, len(names), len(parts))
			continue
		}
		for i, n := range names {
			if d := help[n].def; !strings.HasPrefix(strings.Trim(parts[i], "`"), d) {
				t.Errorf("README: --%s's default is given as %q, --help says %q", n, parts[i], d)
			}
		}
	}
	for n := range help {
		if !seen[n] {
			t.Errorf("--%s is not in any README table", n)
		}
	}
}

// TestREADMETestCommandIsCIs: the test command README gives is the one
// .ci/run runs, so a reader who follows it runs what CI runs (with the
// same time limit: the PostgreSQL package takes about ten minutes under
// -race on two cores, go test's default limit).
func TestREADMETestCommandIsCIs(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	ci, err := os.ReadFile("../../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), "Run the tests")
	if !ok {
		t.Fatal(`README has no "Run the tests" section`)
	}
	_, block, ok := strings.Cut(after, "```sh\n")
	if !ok {
		t.Fatal(`README's "Run the tests" section has no sh block`)
	}
	cmd, _, _ := strings.Cut(block, "\n")
	if !slices.Contains(strings.Split(string(ci), "\n"), cmd) {
		t.Errorf("README's test command %q is not a line of .ci/run", cmd)
	}
}
