// Package chart tests the Helm chart's rendered objects: the plain manifests
// committed in deploy/kubernetes/ (always) and, with HELM set to a helm
// binary (make check-chart), fresh renderings for the default values and
// every ci/*-values.yaml. Every object is decoded strictly into its
// k8s.io/api or prometheus-operator type: an unknown or misspelt field fails.
package chart

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

const (
	chartDir = "../../helm/pausewatch"
	plainDir = "../../kubernetes"
)

// The capability set measured in docs/deploy.md.
var wantCaps = []corev1.Capability{"BPF", "PERFMON", "SYS_PTRACE", "DAC_READ_SEARCH"}

type objects struct {
	daemonSets      []*appsv1.DaemonSet
	configMaps      []*corev1.ConfigMap
	secrets         []*corev1.Secret
	services        []*corev1.Service
	serviceAccounts []*corev1.ServiceAccount
	namespaces      []*corev1.Namespace
	clusterRoles    []*rbacv1.ClusterRole
	bindings        []*rbacv1.ClusterRoleBinding
	serviceMonitors []*monitoringv1.ServiceMonitor
	podMonitors     []*monitoringv1.PodMonitor
	rules           []*monitoringv1.PrometheusRule
}

// decode splits a multi-document stream and strictly decodes each object.
func decode(t *testing.T, name string, stream []byte) objects {
	t.Helper()
	var o objects
	for i, doc := range bytes.Split(stream, []byte("\n---\n")) {
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatalf("%s: document %d: %v", name, i, err)
		}
		if head.Kind == "" {
			continue // comments only
		}
		var into any
		switch head.APIVersion + "/" + head.Kind {
		case "apps/v1/DaemonSet":
			into = appendNew(&o.daemonSets)
		case "v1/ConfigMap":
			into = appendNew(&o.configMaps)
		case "v1/Secret":
			into = appendNew(&o.secrets)
		case "v1/Service":
			into = appendNew(&o.services)
		case "v1/ServiceAccount":
			into = appendNew(&o.serviceAccounts)
		case "v1/Namespace":
			into = appendNew(&o.namespaces)
		case "rbac.authorization.k8s.io/v1/ClusterRole":
			into = appendNew(&o.clusterRoles)
		case "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
			into = appendNew(&o.bindings)
		case "monitoring.coreos.com/v1/ServiceMonitor":
			into = appendNew(&o.serviceMonitors)
		case "monitoring.coreos.com/v1/PodMonitor":
			into = appendNew(&o.podMonitors)
		case "monitoring.coreos.com/v1/PrometheusRule":
			into = appendNew(&o.rules)
		default:
			t.Errorf("%s: document %d: unexpected %s %s", name, i, head.APIVersion, head.Kind)
			continue
		}
		if err := yaml.UnmarshalStrict(doc, into); err != nil {
			t.Errorf("%s: %s document %d: %v", name, head.Kind, i, err)
		}
	}
	return o
}

func appendNew[T any](s *[]*T) *T {
	v := new(T)
	*s = append(*s, v)
	return v
}

func render(t *testing.T, args ...string) []byte {
	t.Helper()
	helm := os.Getenv("HELM")
	if helm == "" {
		t.Skip("HELM not set (make check-chart sets it): chart not rendered")
	}
	cmd := exec.Command(helm, append([]string{"template", "pausewatch", chartDir, "--namespace", "pausewatch"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// checkAgent checks what every rendering of the DaemonSet must have.
func checkAgent(t *testing.T, name string, o objects, privileged bool, extraCaps ...corev1.Capability) *corev1.Container {
	t.Helper()
	if len(o.daemonSets) != 1 {
		t.Fatalf("%s: %d DaemonSets", name, len(o.daemonSets))
	}
	ds := o.daemonSets[0]
	spec := ds.Spec.Template.Spec
	if !spec.HostPID {
		t.Errorf("%s: hostPID off", name)
	}
	if !slices.ContainsFunc(spec.Tolerations, func(tl corev1.Toleration) bool {
		return tl.Operator == corev1.TolerationOpExists && tl.Key == "" && tl.Effect == ""
	}) {
		t.Errorf("%s: no toleration for every taint: %+v", name, spec.Tolerations)
	}
	if spec.PriorityClassName == "" {
		t.Errorf("%s: no priorityClassName", name)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%s: %d containers", name, len(spec.Containers))
	}
	c := &spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: root filesystem not read-only", name)
	}
	if sc != nil && privileged {
		if sc.Privileged == nil || !*sc.Privileged {
			t.Errorf("%s: privileged asked for, not set", name)
		}
	} else if sc != nil {
		if sc.Privileged == nil || *sc.Privileged {
			t.Errorf("%s: privileged by default", name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: allowPrivilegeEscalation not false", name)
		}
		if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
			t.Errorf("%s: runAsUser is not 0 (a non-root uid loses added capabilities at exec)", name)
		}
		want := append(slices.Clone(wantCaps), extraCaps...)
		if sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
			!reflect.DeepEqual(sc.Capabilities.Add, want) {
			t.Errorf("%s: capabilities %+v, want drop [ALL] add %v", name, sc.Capabilities, want)
		}
	}
	hostPaths := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	for _, p := range []string{"/proc", "/sys/kernel/tracing", "/sys/fs/cgroup"} {
		if !slices.Contains(slices.Collect(mapValues(hostPaths)), p) {
			t.Errorf("%s: host %s not mounted", name, p)
		}
	}
	for _, m := range c.VolumeMounts {
		if _, host := hostPaths[m.Name]; host && !m.ReadOnly {
			t.Errorf("%s: host path %s mounted writable", name, m.Name)
		}
	}
	if c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
		t.Errorf("%s: no memory limit or CPU request: %+v", name, c.Resources)
	}
	if !slices.Contains(c.Args, "--procfs=/host/proc") || !slices.Contains(c.Args, "--config=/etc/pausewatch/config.yaml") {
		t.Errorf("%s: args %v", name, c.Args)
	}
	// The pod informer's RBAC.
	if len(o.clusterRoles) != 1 || !slices.ContainsFunc(o.clusterRoles[0].Rules, func(r rbacv1.PolicyRule) bool {
		return slices.Equal(r.APIGroups, []string{""}) && slices.Equal(r.Resources, []string{"pods"}) &&
			slices.Contains(r.Verbs, "list") && slices.Contains(r.Verbs, "watch")
	}) {
		t.Errorf("%s: no ClusterRole with pods list/watch", name)
	}
	if len(o.bindings) != 1 || o.bindings[0].Subjects[0].Name != spec.ServiceAccountName {
		t.Errorf("%s: ClusterRoleBinding does not bind the agent's ServiceAccount %q", name, spec.ServiceAccountName)
	}
	return c
}

func mapValues(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for _, v := range m {
			if !yield(v) {
				return
			}
		}
	}
}

// checkShared: the PrometheusRule is the rules file as it is, and every
// dashboard ConfigMap is labelled for the sidecar and holds its JSON file.
func checkShared(t *testing.T, name string, o objects, wantRules bool) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(chartDir, "files/pausewatch.rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var want monitoringv1.PrometheusRuleSpec
	if err := yaml.UnmarshalStrict(raw, &want); err != nil {
		t.Fatalf("rules file: %v", err)
	}
	if wantRules != (len(o.rules) == 1) {
		t.Errorf("%s: %d PrometheusRules", name, len(o.rules))
	}
	for _, r := range o.rules {
		if !reflect.DeepEqual(r.Spec, want) {
			t.Errorf("%s: PrometheusRule spec differs from files/pausewatch.rules.yaml", name)
		}
	}
	files, _ := filepath.Glob(filepath.Join(chartDir, "files/dashboards/*.json"))
	found := 0
	for _, cm := range o.configMaps {
		if cm.Labels["grafana_dashboard"] != "1" {
			continue
		}
		found++
		for k, v := range cm.Data {
			f := filepath.Join(chartDir, "files/dashboards", strings.TrimPrefix(k, "pausewatch-"))
			b, err := os.ReadFile(f)
			if err != nil || string(b) != v+"\n" && string(b) != v {
				t.Errorf("%s: ConfigMap %s key %s is not %s (%v)", name, cm.Name, k, f, err)
			}
		}
	}
	if o.daemonSets != nil && found != len(files) {
		t.Errorf("%s: %d dashboard ConfigMaps for %d dashboards", name, found, len(files))
	}
}

func TestPlainManifests(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(plainDir, "pausewatch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	o := decode(t, "pausewatch.yaml", b)
	checkAgent(t, "pausewatch.yaml", o, false)
	checkShared(t, "pausewatch.yaml", o, false)
	if len(o.namespaces) != 1 || o.namespaces[0].Name != "pausewatch" {
		t.Errorf("pausewatch.yaml: no pausewatch Namespace")
	}
	if len(o.configMaps) == 0 || !strings.Contains(o.configMaps[0].Data["config.yaml"], "slo:") {
		t.Errorf("pausewatch.yaml: no agent config")
	}
	b, err = os.ReadFile(filepath.Join(plainDir, "prometheus-operator.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	o = decode(t, "prometheus-operator.yaml", b)
	checkShared(t, "prometheus-operator.yaml", o, true)
	if len(o.podMonitors) != 1 || o.podMonitors[0].Spec.PodMetricsEndpoints[0].HonorLabels != true {
		t.Errorf("prometheus-operator.yaml: want one PodMonitor with honorLabels")
	}
}

func TestRenderDefault(t *testing.T) {
	o := decode(t, "default", render(t))
	c := checkAgent(t, "default", o, false)
	checkShared(t, "default", o, false)
	if len(o.serviceMonitors)+len(o.podMonitors)+len(o.secrets)+len(o.namespaces) != 0 {
		t.Errorf("default: opt-in objects rendered")
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("default: readiness probe is not GET /readyz: %+v", c.ReadinessProbe)
	}
	// Least privilege: list and watch pods, nothing else.
	want := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list", "watch"}}}
	if !reflect.DeepEqual(o.clusterRoles[0].Rules, want) {
		t.Errorf("default: ClusterRole rules %+v, want %+v", o.clusterRoles[0].Rules, want)
	}
}

func TestRenderOptIn(t *testing.T) {
	o := decode(t, "opt-in", render(t, "-f", filepath.Join(chartDir, "ci/opt-in-values.yaml")))
	c := checkAgent(t, "opt-in", o, false, "SYS_ADMIN")
	checkShared(t, "opt-in", o, true)
	if len(o.serviceMonitors) != 1 || len(o.podMonitors) != 1 || len(o.secrets) != 1 || len(o.namespaces) != 1 {
		t.Fatalf("opt-in: %d ServiceMonitors, %d PodMonitors, %d Secrets, %d Namespaces",
			len(o.serviceMonitors), len(o.podMonitors), len(o.secrets), len(o.namespaces))
	}
	if !slices.Contains(c.Args, "--web.config.file=/etc/pausewatch/web/web-config.yml") {
		t.Errorf("opt-in: no --web.config.file in %v", c.Args)
	}
	if !strings.Contains(o.secrets[0].StringData["web-config.yml"], "basic_auth_users") {
		t.Errorf("opt-in: web config Secret: %v", o.secrets[0].StringData)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.TCPSocket == nil {
		t.Errorf("opt-in: with basic auth the probes must not be HTTP (401): %+v", c.ReadinessProbe)
	}
	ep := o.serviceMonitors[0].Spec.Endpoints[0]
	if ep.Scheme == nil || *ep.Scheme != "https" || ep.BasicAuth == nil || !ep.HonorLabels {
		t.Errorf("opt-in: ServiceMonitor endpoint %+v", ep)
	}
	if o.serviceMonitors[0].Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("opt-in: ServiceMonitor additionalLabels not applied")
	}
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(o.configMaps[0].Data["config.yaml"]), &cfg); err != nil || cfg["slo"] != "100ms" {
		t.Errorf("opt-in: config %v (%v)", cfg, err)
	}
}

func TestRenderPrivileged(t *testing.T) {
	o := decode(t, "privileged", render(t, "-f", filepath.Join(chartDir, "ci/privileged-values.yaml")))
	checkAgent(t, "privileged", o, true)
}

// values.schema.json refuses what the agent or Kubernetes would refuse.
func TestSchemaRefusesBadValues(t *testing.T) {
	if os.Getenv("HELM") == "" {
		t.Skip("HELM not set")
	}
	for _, set := range []string{
		"securityContext.capabilities={CAP_BPF}",
		"securityContext.privileged=yes",
		"config.slo=5",
		"config.runtimes=go\\,ruby",
		"config.objectives[0].objective=5ms",
		"port=70000",
		"serviceMonitor.scheme=ftp",
		"bogus=1",
	} {
		out, err := exec.Command(os.Getenv("HELM"), "template", "x", chartDir, "--set", set).CombinedOutput()
		if err == nil {
			t.Errorf("--set %s: rendered, want a schema error", set)
		} else if !strings.Contains(string(out), "schema") {
			t.Errorf("--set %s: %v: %s", set, err, out)
		} else {
			t.Logf("--set %s: %s", set, strings.TrimSpace(fmt.Sprint(strings.SplitN(string(out), "\n", 3)[2:])))
		}
	}
	// Every runtime the agent captures is accepted (node was refused
	// until this test: the schema predated Node.js support).
	for _, set := range []string{"config.runtimes=node", "config.runtimes=go\\,jvm\\,python\\,node"} {
		if out, err := exec.Command(os.Getenv("HELM"), "template", "x", chartDir, "--set", set).CombinedOutput(); err != nil {
			t.Errorf("--set %s: %v: %s", set, err, out)
		}
	}
}

// NOTES.txt renders (helm template leaves it out, so it is rendered here as
// an ordinary template of a copy of the chart) and warns about privileged.
func TestNotes(t *testing.T) {
	helm := os.Getenv("HELM")
	if helm == "" {
		t.Skip("HELM not set")
	}
	dir := filepath.Join(t.TempDir(), "pausewatch")
	if out, err := exec.Command("cp", "-r", chartDir, dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	notes, err := os.ReadFile(filepath.Join(dir, "templates/NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "templates/NOTES.txt"))
	wrapped := "notes: |\n  " + strings.ReplaceAll(string(notes), "\n", "\n  ") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "templates/notes.yaml"), []byte(wrapped), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		values string
		want   []string
		not    []string
	}{
		{"", []string{"rollout status daemonset/pausewatch", "/api/status", "podMonitor.enabled=true"}, []string{"WARNING"}},
		{"ci/privileged-values.yaml", []string{"WARNING: securityContext.privileged=true"}, nil},
		{"ci/opt-in-values.yaml", []string{"grafana_dashboard=\"1\" in\n  monitoring"}, []string{"podMonitor.enabled=true", "prometheusRule.enabled=true"}},
	} {
		args := []string{"template", "pausewatch", dir, "--namespace", "pausewatch", "--show-only", "templates/notes.yaml"}
		if tc.values != "" {
			args = append(args, "-f", filepath.Join(chartDir, tc.values))
		}
		out, err := exec.Command(helm, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", tc.values, err, out)
		}
		var doc struct{ Notes string }
		if err := yaml.Unmarshal(out, &doc); err != nil {
			t.Fatalf("%s: %v\n%s", tc.values, err, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(doc.Notes, strings.ReplaceAll(w, "\n  ", "\n")) {
				t.Errorf("NOTES with %q: no %q:\n%s", tc.values, w, doc.Notes)
			}
		}
		for _, w := range tc.not {
			if strings.Contains(doc.Notes, w) {
				t.Errorf("NOTES with %q: has %q", tc.values, w)
			}
		}
	}
}
