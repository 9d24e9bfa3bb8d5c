package main

import (
	"strings"
	"testing"
	"time"
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
