package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/sys/unix"

	"github.com/pausewatch/pausewatch/agent/source"
)

// The agent's settings come from, in rising precedence: defaults, the YAML
// file (--config or PAUSEWATCH_CONFIG), the environment (PAUSEWATCH_<FLAG>,
// e.g. PAUSEWATCH_PID_LABEL), and the command line. Every flag is also a
// top-level key of the file, under the flag's own name; settings that are
// not one-liners (per-service objectives) live only in the file.

// objective is one latency objective from the file.
type objective struct {
	Service   string        `yaml:"service"`
	Port      uint16        `yaml:"port"`
	Objective time.Duration `yaml:"objective"`
}

// objectives picks the objective of a service's port: service and port,
// then service, then port, then the default (--slo).
type objectives struct {
	def  time.Duration
	list []objective
}

func (o objectives) lookup(service string, port uint16) (time.Duration, bool) {
	best, score := time.Duration(0), 0
	for _, ob := range o.list {
		s := 0
		switch {
		case ob.Service == service && ob.Port == port:
			s = 3
		case ob.Service == service && ob.Port == 0:
			s = 2
		case ob.Service == "" && ob.Port == port:
			s = 1
		}
		if s > score {
			best, score = ob.Objective, s
		}
	}
	if score > 0 {
		return best, true
	}
	return o.def, o.def > 0
}

// ports are the ports that have objectives of their own.
func (o objectives) ports() []uint16 {
	var out []uint16
	for _, ob := range o.list {
		if ob.Port != 0 && !slices.Contains(out, ob.Port) {
			out = append(out, ob.Port)
		}
	}
	return out
}

// maxConfigBytes bounds the config file: a real one is a few hundred
// bytes, and without a bound `--config /dev/zero` (or a file that a
// mistake made huge) is read until memory runs out and the agent never
// starts.
const maxConfigBytes = 1 << 20

// envName is the environment variable that sets a flag.
func envName(flagName string) string {
	return "PAUSEWATCH_" + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(flagName))
}

// origins says where each flag's value came from, so that checks made
// after parsing (does --procfs exist?) name what the operator wrote:
// the flag, the environment variable or the config file's field.
type origins map[string]string

func (o origins) of(name string) string {
	if s, ok := o[name]; ok {
		return s
	}
	return "--" + name + " (default)"
}

// readConfig reads at most maxConfigBytes of the file.
func readConfig(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	if len(b) > maxConfigBytes {
		return nil, fmt.Errorf("config file %s: larger than %d bytes (1 MiB), the most a config file may be", path, maxConfigBytes)
	}
	return b, nil
}

// rawObjective is an objective as written in the file; it is checked and
// converted by objective(), so that errors can say what is wanted.
type rawObjective struct {
	Service   string `yaml:"service"`
	Port      int    `yaml:"port"`
	Objective string `yaml:"objective"`
}

func (r rawObjective) objective(i int) (objective, error) {
	var o objective
	if r.Service == "" && r.Port == 0 {
		return o, fmt.Errorf("objectives[%d]: needs a service, a port, or both", i)
	}
	if r.Port < 0 || r.Port > 65535 {
		return o, fmt.Errorf("objectives[%d].port %d: want a port from 1 to 65535, or no port for every port", i, r.Port)
	}
	if err := (durationValue{p: &o.Objective, positive: true}).Set(r.Objective); err != nil {
		return o, fmt.Errorf("objectives[%d].objective %q: %w", i, r.Objective, err)
	}
	o.Service, o.Port = r.Service, uint16(r.Port)
	return o, nil
}

// applyConfig fills the flags not given on the command line from the
// environment, then from the config file, and returns the file's
// objectives and where every flag set came from. Errors name the variable
// or the field, and the value.
func applyConfig(fs *flag.FlagSet, path string) ([]objective, origins, error) {
	from := origins{}
	fs.Visit(func(f *flag.Flag) { from[f.Name] = "--" + f.Name })

	var file map[string]yaml.Node
	var objs []objective
	if path != "" {
		b, err := readConfig(path)
		if err != nil {
			return nil, nil, err
		}
		if err := yaml.Unmarshal(b, &file); err != nil {
			return nil, nil, fmt.Errorf("config file %s: %w", path, err)
		}
		for key, node := range file {
			if key == "objectives" {
				var raw []rawObjective
				if err := node.Decode(&raw); err != nil {
					return nil, nil, fmt.Errorf("config file %s: objectives: %w", path, err)
				}
				for i, r := range raw {
					o, err := r.objective(i)
					if err != nil {
						return nil, nil, fmt.Errorf("config file %s: %w", path, err)
					}
					objs = append(objs, o)
				}
				continue
			}
			if key == "selection" {
				continue // selectionConfig reads it
			}
			if key == "config" || fs.Lookup(key) == nil {
				return nil, nil, fmt.Errorf("config file %s: unknown field %q", path, key)
			}
		}
	}

	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if from[f.Name] != "" || f.Name == "config" {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			from[f.Name] = "environment " + envName(f.Name)
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("environment %s=%q: %w", envName(f.Name), v, err))
			}
			return
		}
		node, ok := file[f.Name]
		if !ok {
			return
		}
		from[f.Name] = fmt.Sprintf("config file %s: field %q", path, f.Name)
		v, err := scalarOrList(node)
		if err == nil {
			err = fs.Set(f.Name, v)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("config file %s: field %q: %q: %w", path, f.Name, v, err))
		}
	})
	return objs, from, errors.Join(errs...)
}

// scalarOrList renders a YAML value as a flag would take it: a list
// becomes comma-separated.
func scalarOrList(n yaml.Node) (string, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		return n.Value, nil
	case yaml.SequenceNode:
		var parts []string
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return "", errors.New("a list of plain values is expected")
			}
			parts = append(parts, c.Value)
		}
		return strings.Join(parts, ","), nil
	}
	return "", errors.New("a plain value or a list is expected")
}

// The flag values below check what they are given, with the accepted
// range in the error, whether the value comes from the command line, the
// environment or the file (all three go through Set). The parsers' own
// errors are replaced, not wrapped: flag reports strconv's as "parse
// error" and time's as `missing unit in duration "5"`, neither of which
// says what to write instead. Their String methods are safe on a zero
// value because flag.PrintDefaults calls them on one.

// durationValue is a time.Duration flag.
type durationValue struct {
	p        *time.Duration
	positive bool // 0 is rejected too
}

func (v durationValue) String() string {
	if v.p == nil {
		return ""
	}
	return v.p.String()
}

func (v durationValue) Set(s string) error {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	switch {
	case err != nil || d < 0:
		if v.positive {
			return errors.New("want a positive Go duration such as 50ms, 1.5s or 10m")
		}
		return errors.New("want a Go duration such as 50ms or 1.5s, or 0 for none")
	case v.positive && d == 0:
		return errors.New("want a positive Go duration such as 50ms, 1.5s or 10m, not 0")
	}
	*v.p = d
	return nil
}

// intValue is an integer flag with an inclusive range.
type intValue[T int | int64] struct {
	p        *T
	min, max T
}

func (v intValue[T]) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.FormatInt(int64(*v.p), 10)
}

func (v intValue[T]) Set(s string) error {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < int64(v.min) || n > int64(v.max) {
		return fmt.Errorf("want a whole number from %d to %d", v.min, v.max)
	}
	*v.p = T(n)
	return nil
}

// rateValue is a positive, finite float flag with an upper bound:
// strconv accepts "NaN" and "Inf", which a token bucket cannot use.
type rateValue struct {
	p   *float64
	max float64
}

func (v rateValue) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.FormatFloat(*v.p, 'g', -1, 64)
}

func (v rateValue) Set(s string) error {
	x, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(x) || x <= 0 || x > v.max {
		return fmt.Errorf("want a number greater than 0 and at most %g, such as 100 or 0.5", v.max)
	}
	*v.p = x
	return nil
}

// stringValue is a string flag that takes only what check accepts.
type stringValue struct {
	p     *string
	check func(string) error
}

func (v stringValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

func (v stringValue) Set(s string) error {
	if err := v.check(s); err != nil {
		return err
	}
	*v.p = s
	return nil
}

// oneOf accepts a fixed set of values.
func oneOf(choices ...string) func(string) error {
	return func(s string) error {
		if !slices.Contains(choices, s) {
			return fmt.Errorf("want one of %s", strings.Join(choices, ", "))
		}
		return nil
	}
}

// knownRuntimes are the source's runtimes, in its order.
var knownRuntimes = source.RuntimeNames()

// checkRuntimes accepts --runtimes: a comma-separated subset of the runtimes.
func checkRuntimes(s string) error {
	for _, r := range strings.Split(s, ",") {
		if !slices.Contains(knownRuntimes, r) {
			return fmt.Errorf("unknown runtime %q: want a comma-separated list of %s", r, strings.Join(knownRuntimes, ", "))
		}
	}
	return nil
}

// checkLogLevel accepts --log-level. It is checked when set rather than
// when the logger is made, so that the error names where the value came
// from.
func checkLogLevel(s string) error {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return errors.New("want debug, info, warn or error")
	}
	return nil
}

// checkEndpoint accepts what the OTLP specification calls an endpoint: an
// http or https URL with a host (and optionally a port and path). The
// OTel SDK ignores an endpoint it cannot parse (envconfig.WithURL: one
// log line) and exports to its default, localhost, instead, so a bad
// --otlp-endpoint is refused here.
func checkEndpoint(s string) error {
	const want = "want an http or https URL such as http://otel-collector:4318"
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%s: %w", want, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" {
		return errors.New(want)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%s (port from 1 to 65535)", want)
		}
	}
	return nil
}

// maxPorts is the size of the kernel's port filter (max_entries of
// traced_ports in bpf/request.c; TestMaxPortsMatchesTheMap keeps the two
// equal). More ports than that failed at load with "key too big for map".
const maxPorts = 256

// portList is a comma-separated list of ports flag; repeats count once.
type portList []uint16

func (p *portList) String() string {
	if p == nil {
		return ""
	}
	var s []string
	for _, v := range *p {
		s = append(s, strconv.Itoa(int(v)))
	}
	return strings.Join(s, ",")
}

func (p *portList) Set(v string) error {
	var ports portList
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil || n == 0 {
			return fmt.Errorf("bad port %q: want ports from 1 to 65535, comma-separated, at most %d", f, maxPorts)
		}
		if !slices.Contains(ports, uint16(n)) {
			ports = append(ports, uint16(n))
		}
	}
	if len(ports) > maxPorts {
		return fmt.Errorf("%d distinct ports: want at most %d (the kernel filter's size); leave --ports out to measure every port", len(ports), maxPorts)
	}
	*p = ports
	return nil
}

// checkProcFS refuses a --procfs that is not a procfs: the agent would
// otherwise start, find no process, and say it is ready.
func checkProcFS(path string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return fmt.Errorf("%q: %w (want the host's procfs mount, such as /proc or /host/proc)", path, err)
	}
	if st.Type != unix.PROC_SUPER_MAGIC {
		return fmt.Errorf("%q is not a procfs mount (want the host's procfs, such as /proc or /host/proc)", path)
	}
	return nil
}
