package main

// The agent under measurement: started, asked (/metrics, /api/processes,
// /debug/pprof) and stopped as a separate process, as it runs on a node.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

type agent struct {
	cmd  *exec.Cmd
	pid  int
	url  string
	logs *os.File
	done chan error
	once sync.Once
}

// startAgent runs the agent on a free loopback port with its default
// settings plus args, and returns once it is ready (/readyz: its probes
// are attached), at most 60 s later.
func (b *bench) startAgent(ctx context.Context, args ...string) (*agent, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logs, err := os.CreateTemp(b.work, "agent-*.log")
	if err != nil {
		return nil, err
	}
	args = append([]string{"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--log-level", "warn"}, args...)
	cmd := exec.Command(b.agentBin, args...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		logs.Close()
		return nil, fmt.Errorf("start agent: %w", err)
	}
	a := &agent{cmd: cmd, pid: cmd.Process.Pid, url: fmt.Sprintf("http://127.0.0.1:%d", port), logs: logs, done: make(chan error, 1)}
	go func() { a.done <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-a.done:
			a.done <- err
			return nil, fmt.Errorf("agent exited before ready (%v): %s", err, a.tail())
		case <-ctx.Done():
			a.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if resp, err := http.Get(a.url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return a, nil
			}
		}
	}
	a.stop()
	return nil, fmt.Errorf("agent not ready after 60 s: %s", a.tail())
}

// tail is the end of the agent's log, for errors.
func (a *agent) tail() string {
	b, _ := os.ReadFile(a.logs.Name())
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// stop ends the agent (SIGTERM, then SIGKILL after 10 s) and waits for
// it; once, however often it is called.
func (a *agent) stop() {
	a.once.Do(func() {
		a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.done:
		case <-time.After(10 * time.Second):
			a.cmd.Process.Kill()
			<-a.done
		}
		a.logs.Close()
	})
}

func (a *agent) get(path string) ([]byte, error) {
	resp, err := http.Get(a.url + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", path, resp.Status)
	}
	return b, nil
}

// scrape is the agent's /metrics, by family name.
func (a *agent) scrape() (map[string]*dto.MetricFamily, error) {
	b, err := a.get("/metrics")
	if err != nil {
		return nil, err
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		return nil, fmt.Errorf("parse /metrics: %w", err)
	}
	return mfs, nil
}

// sum adds up family name's values (counter, gauge, untyped; a
// histogram's or summary's count, or its sum when field is "sum") over
// the series whose labels include want.
func sum(mfs map[string]*dto.MetricFamily, name, field string, want map[string]string) float64 {
	var s float64
	mf := mfs[name]
	if mf == nil {
		return 0
	}
next:
	for _, m := range mf.GetMetric() {
		for k, v := range want {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			s += m.GetCounter().GetValue()
		case m.Gauge != nil:
			s += m.GetGauge().GetValue()
		case m.Untyped != nil:
			s += m.GetUntyped().GetValue()
		case m.Histogram != nil && field == "sum":
			s += m.GetHistogram().GetSampleSum()
		case m.Histogram != nil:
			s += float64(m.GetHistogram().GetSampleCount())
		case m.Summary != nil && field == "sum":
			s += m.GetSummary().GetSampleSum()
		case m.Summary != nil:
			s += float64(m.GetSummary().GetSampleCount())
		}
	}
	return s
}

// requests is the agent's count of requests served on port by service.
func (a *agent) requests(service string, port int) (float64, error) {
	mfs, err := a.scrape()
	if err != nil {
		return 0, err
	}
	return sum(mfs, "pausewatch_request_duration_seconds", "", map[string]string{"service": service, "port": fmt.Sprint(port)}), nil
}

// settled reads f until two readings 300 ms apart agree (the ring buffer
// and the agent's queues drained), at most 10 s.
func settled(f func() (float64, error)) (float64, error) {
	last, err := f()
	if err != nil {
		return 0, err
	}
	for range 33 {
		time.Sleep(300 * time.Millisecond)
		v, err := f()
		if err != nil {
			return 0, err
		}
		if v == last {
			return v, nil
		}
		last = v
	}
	return last, errors.New("still changing after 10 s")
}

// tracked is the set of pids the agent tracks now (/api/processes).
func (a *agent) tracked() (map[int]bool, error) {
	b, err := a.get("/api/processes")
	if err != nil {
		return nil, err
	}
	var ps []struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal(b, &ps); err != nil {
		return nil, fmt.Errorf("/api/processes: %w", err)
	}
	m := make(map[int]bool, len(ps))
	for _, p := range ps {
		m[p.PID] = true
	}
	return m, nil
}

// waitTracked returns once the agent tracks every pid, at most within d.
func (a *agent) waitTracked(d time.Duration, pids ...int) error {
	deadline := time.Now().Add(d)
	for {
		m, err := a.tracked()
		if err != nil {
			return err
		}
		missing := 0
		for _, p := range pids {
			if !m[p] {
				missing++
			}
		}
		if missing == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d processes not tracked after %v", missing, len(pids), d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
