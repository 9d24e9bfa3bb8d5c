package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pausewatch/pausewatch/agent"
	"github.com/pausewatch/pausewatch/agent/source"
	promexp "github.com/pausewatch/pausewatch/exporters/prometheus"
)

// TestMain lets a test run the command itself: the test binary re-executed
// with PAUSEWATCH_TEST_MAIN=1 is pausewatch, with real stdout, stderr and
// exit code, and no build step.
func TestMain(m *testing.M) {
	if os.Getenv("PAUSEWATCH_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runCommand(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "PAUSEWATCH_TEST_MAIN=1")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// TestHelpGoesToStdout: help that was asked for is the answer, on stdout
// with exit 0 (so `pausewatch --help | less` works); a usage error goes to
// stderr with exit 2 and names the flag and the expected format.
func TestHelpGoesToStdout(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--help"}, "Usage: pausewatch [flags]"},
		{[]string{"-h"}, "-memory-limit-mb MiB"},
		{[]string{"watch", "--help"}, "Usage: pausewatch watch"},
		{[]string{"report", "-help"}, "Usage: pausewatch report"},
	} {
		stdout, stderr, code := runCommand(t, tc.args...)
		if code != 0 || stderr != "" || !strings.Contains(stdout, tc.want) {
			t.Errorf("%q: exit %d, stdout %q..., stderr %q; want exit 0 and %q on stdout only",
				tc.args, code, firstLine(stdout), stderr, tc.want)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--slo", "5"}, `pausewatch: --slo "5": want a Go duration such as 50ms or 1.5s`},
		{[]string{"watch", "--jsn"}, "pausewatch watch: flag provided but not defined: -jsn (see pausewatch watch --help)"},
		{[]string{"report", "--json=perhaps"}, `pausewatch report: --json "perhaps": want true or false`},
		{[]string{"report", "my-service"}, `pausewatch report: unexpected argument "my-service" (see pausewatch report --help)`},
		{[]string{"watch", "my-service"}, `pausewatch watch: unexpected argument "my-service" (--service and --pid narrow what is printed; see pausewatch watch --help)`},
		{[]string{"report", "--agent", "localhost:9464"}, `pausewatch report: --agent "localhost:9464": want an http or https URL`},
		{[]string{"watch", "--agent", "localhost:9464"}, `pausewatch watch: --agent "localhost:9464": want an http or https URL`},
	} {
		stdout, stderr, code := runCommand(t, tc.args...)
		if code != 2 || stdout != "" || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2 and %q on stderr only", tc.args, code, stdout, stderr, tc.want)
		}
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

var snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// jsonKeys encodes v and returns its object's keys.
func jsonKeys(t *testing.T, v any) []string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

// TestAPIsAreSnakeCase: every object the JSON APIs serve (/api/processes,
// /api/pauses, /api/requests, /api/events and watch --json) names its
// fields in snake_case, and /api/processes carries every field of the
// process (a field added to agent.Process must be added to processJSON).
func TestAPIsAreSnakeCase(t *testing.T) {
	st := source.ProcessStatus{
		Process: agent.Process{PID: 1, StartTime: 2, Runtime: "go", Method: "none", Service: "s", Exe: "e",
			ContainerID: "c", Pod: "p", Namespace: "n", Container: "k", PodUID: "u", WorkloadKind: "Deployment", Workload: "w",
			ServiceFromEnv: true},
		Why: "why", Version: "go1.26", GCCPU: "none: why", Since: time.Now(),
	}
	procs := processesJSON([]source.ProcessStatus{st}, nil)
	keys := jsonKeys(t, procs[0])
	if want := reflect.TypeFor[agent.Process]().NumField() + 4; len(keys) != want {
		t.Errorf("/api/processes row has %d fields %v, want %d (every agent.Process field plus why, version, gc_cpu, since)", len(keys), keys, want)
	}
	for name, v := range map[string]any{
		"/api/processes": procs[0],
		"/api/pauses":    promexp.Summary{PID: "1"},
		"/api/requests":  promexp.RequestSummary{PID: "1", Objective: 1},
		"/api/tax":       promexp.TaxSummary{PID: "1", GCCPUMethods: map[string]float64{"gc_threads": 1}},
		"/api/events":    pauseJSON{Stopping: 1, Port: 1, Paused: 1},
	} {
		for _, k := range jsonKeys(t, v) {
			if !snakeCase.MatchString(k) {
				t.Errorf("%s: field %q is not snake_case", name, k)
			}
		}
	}
}

// TestSubcommandExtraArgument: watch and report refuse a word after their
// flags (exit 2) before asking any agent; the unreachable --agent makes a
// run that ignored the word exit 1 instead.
func TestSubcommandExtraArgument(t *testing.T) {
	for _, tc := range []struct {
		name string
		main func([]string) int
		args []string
	}{
		{"report", reportMain, []string{"--agent", "http://127.0.0.1:1", "example-go"}},
		{"report --tax", reportMain, []string{"--agent", "http://127.0.0.1:1", "--tax", "example-go"}},
		{"watch", watchMain, []string{"--agent", "http://127.0.0.1:1", "example-go"}},
		{"watch --json", watchMain, []string{"--json", "--agent", "http://127.0.0.1:1", "--", "--service"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.main(tc.args); got != 2 {
				t.Errorf("exit %d, want 2 (usage error)", got)
			}
		})
	}
}
