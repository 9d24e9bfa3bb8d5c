package kube

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/pausewatch/pausewatch/agent"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestServiceChain(t *testing.T) {
	pod := func(labels map[string]string, workload string) *Pod {
		return &Pod{UID: "u1", Namespace: "shop", Name: "api-7d9-x", Labels: labels, Workload: workload,
			WorkloadKind: "Deployment", Containers: map[string]string{"c1": "api-ctr"}}
	}
	for _, tc := range []struct {
		name string
		p    agent.Process
		pod  *Pod
		want string
	}{
		{"OTEL_SERVICE_NAME wins over everything", agent.Process{Service: "checkout", ServiceFromEnv: true, ContainerID: "c1"},
			pod(map[string]string{"app.kubernetes.io/name": "label"}, "wl"), "checkout"},
		{"app.kubernetes.io/name label", agent.Process{Service: "java", ContainerID: "c1"},
			pod(map[string]string{"app.kubernetes.io/name": "label", "app": "other"}, "wl"), "label"},
		{"workload name", agent.Process{Service: "Main", ContainerID: "c1"}, pod(map[string]string{"app": "other"}, "wl"), "wl"},
		{"container name", agent.Process{Service: "server.py", ContainerID: "c1"}, pod(nil, ""), "api-ctr"},
		{"no container name: the source's name", agent.Process{Service: "server.py", ContainerID: "c2"}, pod(nil, ""), "server.py"},
		{"no pod: the source's name (executable, main class, script)", agent.Process{Service: "com.example.Main", ContainerID: "c1"}, nil, "com.example.Main"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Apply(tc.p, tc.pod)
			if got.Service != tc.want {
				t.Errorf("service = %q, want %q", got.Service, tc.want)
			}
			if tc.pod != nil && (got.Namespace != "shop" || got.Pod != "api-7d9-x" || got.PodUID != "u1") {
				t.Errorf("identity = %+v", got)
			}
		})
	}
}

func ctrl(kind, name string) []metav1.OwnerReference {
	yes := true
	return []metav1.OwnerReference{{Kind: kind, Name: name, Controller: &yes}}
}

func TestWorkload(t *testing.T) {
	for _, tc := range []struct {
		owners           []metav1.OwnerReference
		labels           map[string]string
		kind, name       string
		descriptionAsWhy string
	}{
		{ctrl("ReplicaSet", "api-7d9f8c6b5"), map[string]string{"pod-template-hash": "7d9f8c6b5"}, "Deployment", "api", "Deployment through its ReplicaSet"},
		{ctrl("ReplicaSet", "legacy"), nil, "ReplicaSet", "legacy", "a ReplicaSet of no Deployment"},
		{ctrl("ReplicaSet", "api-abc"), map[string]string{"pod-template-hash": "zzz"}, "ReplicaSet", "api-abc", "hash not the name's suffix"},
		{ctrl("StatefulSet", "db"), nil, "StatefulSet", "db", ""},
		{ctrl("DaemonSet", "agent"), nil, "DaemonSet", "agent", ""},
		{ctrl("Job", "backup-29012345"), nil, "CronJob", "backup", "a CronJob's Job"},
		{ctrl("Job", "migrate"), nil, "Job", "migrate", ""},
		{nil, nil, "", "", "a bare pod"},
		{[]metav1.OwnerReference{{Kind: "ReplicaSet", Name: "x"}}, nil, "", "", "an owner that is not the controller"},
	} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{OwnerReferences: tc.owners, Labels: tc.labels}}
		if k, n := workload(pod); k != tc.kind || n != tc.name {
			t.Errorf("%s: = %s/%s, want %s/%s", tc.descriptionAsWhy, k, n, tc.kind, tc.name)
		}
	}
}

func TestSlimPodKeepsOnlyWhatIsUsed(t *testing.T) {
	full := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "api-1", Namespace: "shop", UID: "u1", Labels: map[string]string{"app": "api"},
			Annotations:     map[string]string{"big": strings.Repeat("x", 10000)},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubelet"}},
			OwnerReferences: ctrl("StatefulSet", "api")},
		Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "api", Image: "img", Env: []corev1.EnvVar{{Name: "SECRET", Value: "s"}}}}},
		Status: corev1.PodStatus{PodIP: "10.0.0.1", ContainerStatuses: []corev1.ContainerStatus{
			{Name: "api", ContainerID: "containerd://abc", Image: "img", ImageID: "sha"}}},
	}
	o, err := slimPod(full)
	if err != nil {
		t.Fatal(err)
	}
	s := o.(*corev1.Pod)
	if s.Annotations != nil || s.ManagedFields != nil || len(s.Spec.Containers) != 0 || s.Status.PodIP != "" || s.Status.ContainerStatuses[0].Image != "" {
		t.Errorf("slim pod kept unused fields: %+v", s)
	}
	p := podOf(s)
	if p.Name != "api-1" || p.Namespace != "shop" || p.UID != "u1" || p.Workload != "api" || p.WorkloadKind != "StatefulSet" ||
		p.ContainerName("abc") != "api" || p.Labels["app"] != "api" {
		t.Errorf("pod = %+v", p)
	}
}

// Values from the API server are chosen by whoever creates the pod.
func TestPodValuesSanitised(t *testing.T) {
	p := podOf(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "a\x1b[31mb", Namespace: "n\u202es",
		Labels: map[string]string{"app.kubernetes.io/name": "x\ny" + strings.Repeat("z", 300)}}})
	if p.Name != "a[31mb" || p.Namespace != "ns" || strings.ContainsAny(p.Labels["app.kubernetes.io/name"], "\n") ||
		len(p.Labels["app.kubernetes.io/name"]) > agent.MaxLabelBytes {
		t.Errorf("unsanitised: %+v", p)
	}
}

func TestSelection(t *testing.T) {
	parse := func(t *testing.T, src string) *Selection {
		t.Helper()
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(src), &n); err != nil {
			t.Fatal(err)
		}
		s, err := ParseSelection(n.Content[0])
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	shop := &Pod{Namespace: "shop", Labels: map[string]string{"tier": "web", "team": "pay"}}
	sys := &Pod{Namespace: "kube-system"}
	for _, tc := range []struct {
		name, sel string
		subj      Subject
		excluded  bool
	}{
		{"default: everything", "{}", Subject{Runtime: "go", ExePath: "/bin/x"}, false},
		{"exclude namespace glob", "exclude: [{namespaces: [kube-*]}]", Subject{Runtime: "go", Pod: sys}, true},
		{"exclude namespace: other namespace kept", "exclude: [{namespaces: [kube-*]}]", Subject{Runtime: "go", Pod: shop}, false},
		{"exclude namespace: host process kept", "exclude: [{namespaces: [kube-*]}]", Subject{Runtime: "go"}, false},
		{"include namespace: host process out", "include: [{namespaces: [shop]}]", Subject{Runtime: "go"}, true},
		{"include namespace: pod in", "include: [{namespaces: [shop]}]", Subject{Runtime: "go", Pod: shop}, false},
		{"exe base name glob", "exclude: [{exe: ['gopls*']}]", Subject{Runtime: "go", ExePath: "/root/go/bin/gopls"}, true},
		{"exe path glob", "exclude: [{exe: ['/usr/lib/go-*/pkg/tool/*/*']}]", Subject{Runtime: "go", ExePath: "/usr/lib/go-1.19/pkg/tool/linux_amd64/compile"}, true},
		{"exe path glob: no match", "exclude: [{exe: ['/usr/lib/*']}]", Subject{Runtime: "go", ExePath: "/opt/app"}, false},
		{"runtime", "exclude: [{runtimes: [python]}]", Subject{Runtime: "python"}, true},
		{"rule fields AND: runtime matches, namespace not", "exclude: [{runtimes: [go], namespaces: [kube-system]}]", Subject{Runtime: "go", Pod: shop}, false},
		{"pod labels all must match", "exclude: [{pod-labels: {tier: web, team: 'p*'}}]", Subject{Pod: shop}, true},
		{"pod labels: one differs", "exclude: [{pod-labels: {tier: web, team: ops}}]", Subject{Pod: shop}, false},
		{"include then exclude", "{include: [{namespaces: ['*']}], exclude: [{pod-labels: {tier: web}}]}", Subject{Pod: shop}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			why := parse(t, tc.sel).Excluded(tc.subj)
			if (why != "") != tc.excluded {
				t.Errorf("excluded = %q, want excluded=%v", why, tc.excluded)
			}
		})
	}
	for _, bad := range []string{"exclude: [{}]", "exclude: [{runtimes: [rust]}]", "include: [{exe: ['[']}]", "exclude: [{nope: 1}]"} {
		var n yaml.Node
		yaml.Unmarshal([]byte(bad), &n)
		if _, err := ParseSelection(n.Content[0]); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func runningPod(uid, ns, name, ctr, cid string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{UID: types.UID(uid), Namespace: ns, Name: name, OwnerReferences: ctrl("ReplicaSet", "api-5f6"),
			Labels: map[string]string{"pod-template-hash": "5f6"}},
		Spec: corev1.PodSpec{NodeName: "n1"},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: ctr, ContainerID: "containerd://" + cid,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}},
	}
}

// The identity stage against client-go's fake clientset: a container
// process's events wait for its pod (and only its own), a pod on another
// node is never seen, an exit releases what waited, and the wait is bounded.
func TestIdentityWaitsForPod(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs := fake.NewClientset(runningPod("u-other", "shop", "elsewhere", "c", "cid-other"))
	// The fake honours no field selector: the pod above is on "n1" too;
	// what matters here is the flow of events.
	list := func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
		return cs.CoreV1().Pods("").List(ctx, o)
	}
	pods := newPods(list, cs.CoreV1().Pods("").Watch, cs, "n1", quiet)
	go pods.Run(ctx)
	x := New(Options{Pods: pods, Wait: 2 * time.Second, Logger: quiet})
	src := &chanSource{ch: make(chan agent.Event, 16)}
	out := make(chan agent.Event, 16)
	go x.Wrap(src).Run(ctx, out)

	host := agent.Process{PID: 1, StartTime: 1, Runtime: "go", Service: "hostd"}
	ctr := agent.Process{PID: 2, StartTime: 2, Runtime: "go", Service: "server", ContainerID: "cid-api", PodUID: "u-api"}
	src.ch <- agent.Event{Type: agent.Pause, Process: ctr, Duration: 1}
	src.ch <- agent.Event{Type: agent.Pause, Process: host, Duration: 2}
	// The host process's event is not held behind the container's.
	if e := recv(t, out); e.Process.PID != 1 || e.Process.Pod != "" {
		t.Fatalf("first out = %+v, want the host process's", e)
	}
	select {
	case e := <-out:
		t.Fatalf("container event went out before its pod was known: %+v", e)
	case <-time.After(300 * time.Millisecond):
	}
	src.ch <- agent.Event{Type: agent.Pause, Process: ctr, Duration: 3}
	if _, err := cs.CoreV1().Pods("shop").Create(ctx, runningPod("u-api", "shop", "api-5f6-abcde", "api", "cid-api"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []time.Duration{1, 3} { // in order, both labelled
		e := recv(t, out)
		if e.Duration != d || e.Process.Pod != "api-5f6-abcde" || e.Process.Namespace != "shop" || e.Process.Container != "api" ||
			e.Process.Service != "api" || e.Process.Workload != "api" || e.Process.WorkloadKind != "Deployment" {
			t.Fatalf("event = %+v", e)
		}
	}

	// A container whose pod never comes: out, unlabelled, after the wait.
	lost := agent.Process{PID: 3, StartTime: 3, Runtime: "python", Service: "job.py", ContainerID: "cid-none"}
	start := time.Now()
	src.ch <- agent.Event{Type: agent.Pause, Process: lost, Duration: 4}
	e := recv(t, out)
	if waited := time.Since(start); waited < 2*time.Second || e.Process.Pod != "" || e.Process.Service != "job.py" {
		t.Fatalf("after %v: %+v", waited, e)
	}
	if x.misses.Load() != 1 || x.timeouts.Load() != 1 {
		t.Errorf("misses = %d, timeouts = %d, want 1, 1", x.misses.Load(), x.timeouts.Load())
	}

	// An exit releases a waiting process's events at once, then the exit.
	gone := agent.Process{PID: 4, StartTime: 4, Runtime: "go", Service: "short", ContainerID: "cid-short"}
	src.ch <- agent.Event{Type: agent.Pause, Process: gone, Duration: 5}
	src.ch <- agent.Event{Type: agent.Exit, Process: gone}
	if e := recv(t, out); e.Duration != 5 {
		t.Fatalf("= %+v", e)
	}
	if e := recv(t, out); e.Type != agent.Exit {
		t.Fatalf("= %+v", e)
	}
	if time.Since(start) > 4*time.Second {
		t.Errorf("exit waited")
	}
}

func TestIdentitySelectionDropsExcluded(t *testing.T) {
	var n yaml.Node
	yaml.Unmarshal([]byte("exclude: [{runtimes: [python]}]"), &n)
	sel, err := ParseSelection(n.Content[0])
	if err != nil {
		t.Fatal(err)
	}
	x := New(Options{Selection: sel, Logger: quiet}) // off Kubernetes
	py := agent.Process{PID: 5, StartTime: 5, Runtime: "python", Service: "s"}
	gp := agent.Process{PID: 6, StartTime: 6, Runtime: "go", Service: "g", ContainerID: "c"}
	if out := x.handle(nil, agent.Event{Type: agent.Pause, Process: py}, time.Now); len(out) != 0 {
		t.Errorf("excluded process's event went out: %+v", out)
	}
	// Off Kubernetes a container process does not wait.
	if out := x.handle(nil, agent.Event{Type: agent.Pause, Process: gp}, time.Now); len(out) != 1 {
		t.Errorf("= %+v", out)
	}
	if _, why := x.Describe(py); !strings.Contains(why, "runtime python") {
		t.Errorf("why = %q", why)
	}
	if x.excluded.Load() != 1 {
		t.Errorf("excluded = %d", x.excluded.Load())
	}
}

func TestOffKubernetes(t *testing.T) {
	t.Setenv("KUBECONFIG", "")
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if _, ok, err := ClientConfig(""); ok || err != nil {
		t.Errorf("ClientConfig off Kubernetes = %v, %v; want not ok, no error", ok, err)
	}
	if _, ok, err := ClientConfig("/nonexistent/kubeconfig"); !ok || err == nil {
		t.Errorf("a named kubeconfig that does not exist: ok=%v err=%v; want ok and an error", ok, err)
	}
}

type chanSource struct{ ch chan agent.Event }

func (c *chanSource) Run(ctx context.Context, out chan<- agent.Event) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-c.ch:
			out <- e
		}
	}
}

func recv(t *testing.T, ch <-chan agent.Event) agent.Event {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
	}
	return agent.Event{}
}

// The per-pause path of a settled process off Kubernetes: one event in,
// one out, no allocation.
func BenchmarkIdentityPause(b *testing.B) {
	x := New(Options{Logger: quiet})
	e := agent.Event{Type: agent.Pause, Process: agent.Process{PID: 6, StartTime: 6, Runtime: "go", Service: "g"}, Reason: "GC mark termination"}
	var buf []agent.Event
	b.ReportAllocs()
	for b.Loop() {
		if buf = x.handle(buf[:0], e, time.Now); len(buf) != 1 {
			b.Fatalf("= %+v", buf)
		}
	}
}
