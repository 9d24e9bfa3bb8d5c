package kube

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Selection says which processes the agent reports on: those matched by
// an include rule (every process when there is none) and by no exclude
// rule. Rules are checked once per process, when its identity is known.
type Selection struct {
	Include []Rule `yaml:"include"`
	Exclude []Rule `yaml:"exclude"`
}

// A Rule matches a process when every field it sets matches; a list field
// matches when any of its entries does. Patterns are shell globs
// (path.Match: *, ?, [...]).
type Rule struct {
	// Namespaces: globs on the pod's namespace. A process in no pod never
	// matches a rule that sets this.
	Namespaces []string `yaml:"namespaces"`
	// PodLabels: label name to a glob on its value; every one must match.
	// A process in no pod never matches a rule that sets this.
	PodLabels map[string]string `yaml:"pod-labels"`
	// Exe: globs on the executable; one with a slash is matched against the
	// whole path (/usr/lib/jvm/*/bin/java), one without against the base
	// name (python3*).
	Exe []string `yaml:"exe"`
	// Runtimes: go, jvm, python.
	Runtimes []string `yaml:"runtimes"`
}

// Subject is what a rule is matched against.
type Subject struct {
	Runtime, ExePath string
	Pod              *Pod // nil: the process is in no pod (or its pod is unknown)
}

// ParseSelection reads the config file's `selection:` node and checks its
// patterns, so that a typo fails at start rather than never matching.
func ParseSelection(n *yaml.Node) (*Selection, error) {
	// Node.Decode ignores unknown fields; a misspelt key (namespace:)
	// would then match everything, so the node is decoded strictly.
	b, err := yaml.Marshal(n)
	if err != nil {
		return nil, fmt.Errorf("selection: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var s Selection
	if err := dec.Decode(&s); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("selection: %w", err)
	}
	var errs []error
	for which, rules := range map[string][]Rule{"include": s.Include, "exclude": s.Exclude} {
		for i, r := range rules {
			if err := r.check(); err != nil {
				errs = append(errs, fmt.Errorf("selection: %s[%d]: %w", which, i, err))
			}
		}
	}
	return &s, errors.Join(errs...)
}

var runtimes = []string{"go", "jvm", "python"}

func (r Rule) check() error {
	if len(r.Namespaces)+len(r.PodLabels)+len(r.Exe)+len(r.Runtimes) == 0 {
		return errors.New("an empty rule: set namespaces, pod-labels, exe or runtimes")
	}
	var pats []string
	pats = append(pats, r.Namespaces...)
	pats = append(pats, r.Exe...)
	for k, v := range r.PodLabels {
		if k == "" {
			return errors.New("pod-labels: an empty label name")
		}
		pats = append(pats, v)
	}
	for _, p := range pats {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("pattern %q: %w", p, err)
		}
	}
	for _, rt := range r.Runtimes {
		if !slices.Contains(runtimes, rt) {
			return fmt.Errorf("runtime %q: want go, jvm or python", rt)
		}
	}
	return nil
}

func anyMatch(pats []string, s string) bool {
	for _, p := range pats {
		if ok, _ := path.Match(p, s); ok {
			return true
		}
	}
	return false
}

// match says whether the rule matches, and what matched.
func (r Rule) match(s Subject) (string, bool) {
	var why []string
	if len(r.Namespaces) > 0 {
		if s.Pod == nil || !anyMatch(r.Namespaces, s.Pod.Namespace) {
			return "", false
		}
		why = append(why, "namespace "+s.Pod.Namespace)
	}
	if len(r.PodLabels) > 0 {
		if s.Pod == nil {
			return "", false
		}
		for k, pat := range r.PodLabels {
			v, ok := s.Pod.Labels[k]
			if m, _ := path.Match(pat, v); !ok || !m {
				return "", false
			}
		}
		why = append(why, "pod labels")
	}
	if len(r.Exe) > 0 {
		hit := false
		for _, p := range r.Exe {
			target := path.Base(s.ExePath)
			if strings.Contains(p, "/") {
				target = s.ExePath
			}
			if m, _ := path.Match(p, target); m && s.ExePath != "" {
				hit = true
				break
			}
		}
		if !hit {
			return "", false
		}
		why = append(why, "exe "+s.ExePath)
	}
	if len(r.Runtimes) > 0 {
		if !slices.Contains(r.Runtimes, s.Runtime) {
			return "", false
		}
		why = append(why, "runtime "+s.Runtime)
	}
	return strings.Join(why, ", "), true
}

// Excluded returns why the selection leaves the subject out, or "".
func (sel *Selection) Excluded(s Subject) string {
	if sel == nil {
		return ""
	}
	if len(sel.Include) > 0 {
		in := false
		for _, r := range sel.Include {
			if _, ok := r.match(s); ok {
				in = true
				break
			}
		}
		if !in {
			return "selection: matched by no include rule"
		}
	}
	for i, r := range sel.Exclude {
		if what, ok := r.match(s); ok {
			return fmt.Sprintf("selection: exclude[%d] (%s)", i, what)
		}
	}
	return ""
}

// NeedsExePath says whether any rule looks at the executable.
func (sel *Selection) NeedsExePath() bool {
	if sel == nil {
		return false
	}
	for _, r := range append(slices.Clone(sel.Include), sel.Exclude...) {
		if len(r.Exe) > 0 {
			return true
		}
	}
	return false
}
