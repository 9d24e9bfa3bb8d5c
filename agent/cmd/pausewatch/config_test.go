package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

func TestConfigPrecedence(t *testing.T) {
	t.Setenv("PAUSEWATCH_SLO", "200ms") // env beats the file's 100ms
	f, err := parseAgentFlags([]string{"--config", "testdata/good.yaml", "--listen", ":7777"})
	if err != nil {
		t.Fatal(err)
	}
	if f.listen != ":7777" {
		t.Errorf("listen %q: the flag must beat the file", f.listen)
	}
	if !f.pidLabel {
		t.Error("pid-label from the file not applied")
	}
	if f.slo != 200*time.Millisecond {
		t.Errorf("slo %v: the environment must beat the file", f.slo)
	}
	if len(f.ports) != 2 || f.ports[1] != 8443 {
		t.Errorf("ports %v", f.ports)
	}
	for _, tc := range []struct {
		service string
		port    uint16
		want    time.Duration
	}{
		{"checkout", 8080, 25 * time.Millisecond},
		{"checkout", 9090, 500 * time.Millisecond},
		{"billing", 8443, 200 * time.Millisecond},
		{"checkout", 8443, 25 * time.Millisecond}, // service beats port
		{"billing", 8080, 200 * time.Millisecond}, // the default (env)
	} {
		got, ok := f.objectives.lookup(tc.service, tc.port)
		if !ok || got != tc.want {
			t.Errorf("objective(%s, %d) = %v %v, want %v", tc.service, tc.port, got, ok, tc.want)
		}
	}
	// No --slo, no objectives: no breaches are counted.
	if _, ok := (objectives{}).lookup("x", 1); ok {
		t.Error("an empty configuration has an objective")
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--config", "testdata/unknown-field.yaml"}, nil, `unknown field "listen-address"`},
		{[]string{"--config", "testdata/bad-duration.yaml"}, nil, `field "slo"`},
		{[]string{"--config", "testdata/bad-objective.yaml"}, nil, "objectives[0].objective"},
		{[]string{"--config", "testdata/bad-port.yaml"}, nil, `field "ports"`},
		{[]string{"--config", "testdata/missing.yaml"}, nil, "config file"},
		{nil, map[string]string{"PAUSEWATCH_MAX_SERIES": "many"}, "PAUSEWATCH_MAX_SERIES"},
		{[]string{"--slo", "-1s"}, nil, "--slo"},
		{[]string{"--pid-series-ttl", "0s"}, nil, "--pid-series-ttl"},
		{[]string{"surprise"}, nil, `"surprise"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := parseAgentFlags(tc.args)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one naming %s", err, tc.want)
			}
		})
	}
}

func TestRuntimesFlag(t *testing.T) {
	if _, err := parseAgentFlags([]string{"--runtimes", "go,ruby"}); err == nil || !strings.Contains(err.Error(), "ruby") {
		t.Errorf("err = %v", err)
	}
	f, err := parseAgentFlags([]string{"--runtimes", "jvm"})
	if err != nil || f.runtimes != "jvm" {
		t.Errorf("%v %q", err, f.runtimes)
	}
}

// TestRejectedValues: every value outside its range is refused at start,
// and the error names where the value came from (flag, environment
// variable or config field) and what is accepted.
func TestRejectedValues(t *testing.T) {
	dir := t.TempDir()
	writeConfig := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sloFile := writeConfig("slo.yaml", "slo: 50 millis\n")
	objFile := writeConfig("obj.yaml", "objectives:\n  - service: a\n    objective: 50 millis\n")
	objPortFile := writeConfig("objport.yaml", "objectives:\n  - port: 70000\n    objective: 50ms\n")
	procfsFile := writeConfig("procfs.yaml", "procfs: /nonexistent\n")
	webBadKey := writeConfig("web-nokey.yml", "tls_server_config:\n  cert_file: /nonexistent.crt\n")
	webUnknown := writeConfig("web-unknown.yml", "basic_auth_user:\n  a: b\n")
	big := writeConfig("big.yaml", "# "+strings.Repeat("x", maxConfigBytes)+"\n")
	many := make([]string, maxPorts+1)
	for i := range many {
		many[i] = strconv.Itoa(1000 + i)
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want []string // all must be in the error
	}{
		{"slo without unit", []string{"--slo", "5"}, nil, []string{`--slo "5"`, "want a Go duration such as 50ms or 1.5s"}},
		{"slo in file", []string{"--config", sloFile}, nil, []string{`field "slo"`, `"50 millis"`, "50ms or 1.5s"}},
		{"slo in env", nil, map[string]string{"PAUSEWATCH_SLO": "5"}, []string{`PAUSEWATCH_SLO="5"`, "50ms or 1.5s"}},
		{"negative slo", []string{"--slo", "-1s"}, nil, []string{"--slo", "Go duration"}},
		{"objective in file", []string{"--config", objFile}, nil, []string{"objectives[0].objective", `"50 millis"`, "positive Go duration"}},
		{"objective port", []string{"--config", objPortFile}, nil, []string{"objectives[0].port 70000", "1 to 65535"}},
		{"zero ttl", []string{"--pid-series-ttl", "0s"}, nil, []string{"--pid-series-ttl", "positive Go duration"}},
		{"negative threshold", []string{"--otlp-log-threshold", "-5ms"}, nil, []string{"--otlp-log-threshold", "Go duration"}},
		{"negative memory limit", []string{"--memory-limit-mb", "-1"}, nil, []string{`--memory-limit-mb "-1"`, "from 0 to 1048576"}},
		{"huge memory limit", []string{"--memory-limit-mb", "9999999999999"}, nil, []string{"--memory-limit-mb", "from 0 to 1048576"}},
		{"memory limit in env", nil, map[string]string{"PAUSEWATCH_MEMORY_LIMIT_MB": "-1"}, []string{"PAUSEWATCH_MEMORY_LIMIT_MB", "from 0 to"}},
		{"max series word", nil, map[string]string{"PAUSEWATCH_MAX_SERIES": "many"}, []string{"PAUSEWATCH_MAX_SERIES", "from 1 to 1000000"}},
		{"zero max series", []string{"--max-series", "0"}, nil, []string{"--max-series", "from 1 to"}},
		{"zero max processes", []string{"--max-processes", "0"}, nil, []string{"--max-processes", "from 1 to 4194304"}},
		{"rate NaN", []string{"--otlp-log-rate", "NaN"}, nil, []string{`--otlp-log-rate "NaN"`, "greater than 0 and at most 1e+06"}},
		{"rate Inf", []string{"--otlp-log-rate", "+Inf"}, nil, []string{"--otlp-log-rate", "greater than 0"}},
		{"rate zero", []string{"--otlp-log-rate", "0"}, nil, []string{"--otlp-log-rate", "greater than 0"}},
		{"burst zero", []string{"--otlp-log-burst", "0"}, nil, []string{"--otlp-log-burst", "from 1 to"}},
		{"bad endpoint", []string{"--otlp-endpoint", "::bad::"}, nil, []string{`--otlp-endpoint "::bad::"`, "http or https URL"}},
		{"endpoint without scheme", []string{"--otlp-endpoint", "collector:4318"}, nil, []string{"--otlp-endpoint", "http or https URL"}},
		{"endpoint bad port", []string{"--otlp-endpoint", "http://collector:99999"}, nil, []string{"--otlp-endpoint", "port from 1 to 65535"}},
		{"endpoint in OTEL env", nil, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "::bad::"}, []string{`OTEL_EXPORTER_OTLP_ENDPOINT="::bad::"`, "http or https URL"}},
		{"metrics endpoint in OTEL env", []string{"--otlp-endpoint", "http://ok:4318"}, map[string]string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "ftp://x"}, []string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http or https URL"}},
		{"protocol", []string{"--otlp-protocol", "udp"}, nil, []string{"--otlp-protocol", "grpc, http/protobuf"}},
		{"log level", []string{"--log-level", "loud"}, nil, []string{"--log-level", "debug, info, warn or error"}},
		{"runtime", []string{"--runtimes", "go,ruby"}, nil, []string{"--runtimes", `"ruby"`, "go, jvm, python"}},
		{"bool", []string{"--pid-label=maybe"}, nil, []string{`--pid-label "maybe"`, "true or false"}},
		{"port out of range", []string{"--ports", "8080,70000"}, nil, []string{"--ports", `"70000"`, "1 to 65535"}},
		{"too many ports", []string{"--ports", strings.Join(many, ",")}, nil, []string{"--ports", "257 distinct ports", "at most 256"}},
		{"procfs missing", []string{"--procfs", "/nonexistent"}, nil, []string{"--procfs", "/nonexistent", "procfs mount"}},
		{"procfs not procfs", []string{"--procfs", dir}, nil, []string{"--procfs", "is not a procfs mount"}},
		{"procfs in file", []string{"--config", procfsFile}, nil, []string{`field "procfs"`, "/nonexistent"}},
		{"config /dev/zero", []string{"--config", "/dev/zero"}, nil, []string{"config file /dev/zero", "1 MiB"}},
		{"config too big", []string{"--config", big}, nil, []string{"config file " + big, "1 MiB"}},
		{"web config missing", []string{"--web.config.file", "/nonexistent.yml"}, nil, []string{`--web.config.file "/nonexistent.yml"`, "no such file"}},
		{"web config without key", []string{"--web.config.file", webBadKey}, nil, []string{"--web.config.file", "key"}},
		{"web config unknown field", nil, map[string]string{"PAUSEWATCH_WEB_CONFIG_FILE": webUnknown}, []string{"PAUSEWATCH_WEB_CONFIG_FILE", "basic_auth_user"}},
		{"stream clients zero", []string{"--max-stream-clients", "0"}, nil, []string{"--max-stream-clients", "from 1 to 10000"}},
		{"unknown flag", []string{"--nope"}, nil, []string{"-nope", "pausewatch --help"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := parseAgentFlags(tc.args)
			if err == nil {
				t.Fatalf("accepted; want an error naming %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

// TestAcceptedEdges: the ends of each range are accepted, so the bounds
// above are where the error says they are.
func TestAcceptedEdges(t *testing.T) {
	ports := make([]string, 0, 2*maxPorts)
	for i := range maxPorts {
		ports = append(ports, strconv.Itoa(1000+i), strconv.Itoa(1000+i)) // repeats count once
	}
	for _, args := range [][]string{
		{"--memory-limit-mb", "0"},
		{"--memory-limit-mb", "1048576"},
		{"--otlp-log-rate", "1000000", "--otlp-log-burst", "1000000"},
		{"--otlp-log-rate", "0.5", "--otlp-log-burst", "1"},
		{"--slo", "0", "--otlp-log-threshold", "0s"},
		{"--otlp-endpoint", "https://collector.example:4317/v1"},
		{"--otlp-endpoint", "http://[::1]:4318"},
		{"--ports", strings.Join(ports, ",")},
		{"--max-processes", "4194304", "--max-series", "1"},
		{"--procfs", "/proc"},
		{"--log-level", "DEBUG"},
	} {
		f, err := parseAgentFlags(args)
		if err != nil {
			t.Errorf("%q: %v", args, err)
		}
		if args[0] == "--ports" && len(f.ports) != maxPorts {
			t.Errorf("--ports with repeats: %d ports, want %d", len(f.ports), maxPorts)
		}
	}
}

// TestMaxPortsMatchesTheMap: maxPorts is the kernel filter's size. If the
// map grows or shrinks, the flag's bound must follow, or the agent fails
// at load with "key too big for map" again.
func TestMaxPortsMatchesTheMap(t *testing.T) {
	spec, err := ebpf.LoadCollectionSpec("../../source/bpf_x86_bpfel.o")
	if err != nil {
		t.Fatal(err)
	}
	m, ok := spec.Maps["traced_ports"]
	if !ok {
		t.Fatal("no traced_ports map in the BPF object")
	}
	if m.MaxEntries != maxPorts {
		t.Errorf("traced_ports holds %d ports, maxPorts is %d", m.MaxEntries, maxPorts)
	}
}

func TestSelectionInConfigFile(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		body    string
		wantErr string // "" for accepted
	}{
		{"slo: 50ms\nselection:\n  exclude:\n    - namespaces: [kube-system]\n    - runtimes: [python]\n", ""},
		{"selection:\n  exclude:\n    - runtimes: [rust]\n", `runtime "rust"`},
		{"selection:\n  include:\n    - exe: ['[']\n", "pattern"},
		{"selection:\n  exclude:\n    - {}\n", "empty rule"},
		{"selection:\n  exclude:\n    - namespace: [typo]\n", `field namespace not found`},
	} {
		p := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(p, []byte(tc.body), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := parseAgentFlags([]string{"--config", p})
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%q: %v", tc.body, err)
		case tc.wantErr == "" && (f.selection == nil || len(f.selection.Exclude) != 2):
			t.Errorf("%q: selection = %+v", tc.body, f.selection)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), p)):
			t.Errorf("%q: err = %v, want one naming the file and %q", tc.body, err, tc.wantErr)
		}
	}
}
