package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
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

// envName is the environment variable that sets a flag.
func envName(flagName string) string {
	return "PAUSEWATCH_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// applyConfig fills the flags not given on the command line from the
// environment, then from the config file, and returns the file's
// objectives. Errors name the variable or the field.
func applyConfig(fs *flag.FlagSet, path string) ([]objective, error) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	var file map[string]yaml.Node
	var objs []objective
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config file: %w", err)
		}
		if err := yaml.Unmarshal(b, &file); err != nil {
			return nil, fmt.Errorf("config file %s: %w", path, err)
		}
		for key, node := range file {
			if key == "objectives" {
				if err := node.Decode(&objs); err != nil {
					return nil, fmt.Errorf("config file %s: objectives: %w", path, err)
				}
				for i, o := range objs {
					if o.Objective <= 0 {
						return nil, fmt.Errorf("config file %s: objectives[%d].objective: must be a positive duration such as 100ms", path, i)
					}
					if o.Service == "" && o.Port == 0 {
						return nil, fmt.Errorf("config file %s: objectives[%d]: needs a service, a port, or both", path, i)
					}
				}
				continue
			}
			if key == "config" || fs.Lookup(key) == nil {
				return nil, fmt.Errorf("config file %s: unknown field %q", path, key)
			}
		}
	}

	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || f.Name == "config" {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("environment %s=%q: %w", envName(f.Name), v, err))
			}
			return
		}
		node, ok := file[f.Name]
		if !ok {
			return
		}
		v, err := scalarOrList(node)
		if err == nil {
			err = fs.Set(f.Name, v)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("config file %s: field %q: %w", path, f.Name, err))
		}
	})
	return objs, errors.Join(errs...)
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

// portList is a comma-separated list of ports flag.
type portList []uint16

func (p *portList) String() string {
	var s []string
	for _, v := range *p {
		s = append(s, strconv.Itoa(int(v)))
	}
	return strings.Join(s, ",")
}

func (p *portList) Set(v string) error {
	*p = nil
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil || n == 0 {
			return fmt.Errorf("bad port %q", f)
		}
		*p = append(*p, uint16(n))
	}
	return nil
}
