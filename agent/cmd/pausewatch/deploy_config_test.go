package main

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The config file and arguments the Helm chart gives the agent (rendered
// into deploy/kubernetes/ by make manifests) are accepted by the agent as
// they are, and mean what the chart's values say.
func TestDeployedConfigIsAccepted(t *testing.T) {
	const manifest = "../../../deploy/kubernetes/pausewatch.yaml"
	b, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	var config string
	var args []string
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	for {
		var doc struct {
			Kind string
			Data map[string]string
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct{ Args []string }
					}
				}
			}
		}
		if err := dec.Decode(&doc); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", manifest, err)
		}
		switch doc.Kind {
		case "ConfigMap":
			if c, ok := doc.Data["config.yaml"]; ok {
				config = c
			}
		case "DaemonSet":
			args = doc.Spec.Template.Spec.Containers[0].Args
		}
	}
	if config == "" || args == nil {
		t.Fatalf("%s: no agent ConfigMap or DaemonSet", manifest)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	// The DaemonSet's arguments, with the paths that exist only in the pod
	// pointed at their counterparts here.
	for i, a := range args {
		switch {
		case strings.HasPrefix(a, "--config="):
			args[i] = "--config=" + path
		case strings.HasPrefix(a, "--procfs="):
			args[i] = "--procfs=/proc"
		}
	}
	if !slices.Contains(args, "--config="+path) {
		t.Fatalf("DaemonSet args %v: no --config", args)
	}
	f, err := parseAgentFlags(args)
	if err != nil {
		t.Fatalf("the agent refuses the chart's config or args %v: %v\n%s", args, err, config)
	}
	if f.slo != 250*time.Millisecond || f.memLimitMB != 200 || f.listen != ":9464" {
		t.Errorf("slo %v, memory-limit-mb %d, listen %q: not the chart's defaults", f.slo, f.memLimitMB, f.listen)
	}
}
