package examples

// Kubernetes identity end to end: a real kube-apiserver and etcd on
// loopback (test/kube/up.sh), real Go and Python processes placed in cgroup
// directories named exactly as the kubelet and containerd or CRI-O name
// them, and Pod objects created and updated as a kubelet would report them.
// No kubelet or container engine runs: the agent cannot tell the
// difference, because it reads only /proc/<pid>/cgroup and the API server.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

const (
	kubeAPIPort   = 19850 // etcd takes 19851 and 19852
	kubeAgentPort = 19853
	kubeNode      = "e2e-node"
)

// kubeCluster is what test/kube/up.sh started.
type kubeCluster struct {
	dir            string
	admin, agentKC string
	cs             kubernetes.Interface
}

// startKube runs test/kube/up.sh and stops it when the test ends. It skips
// only when the API server cannot be built here (no module proxy), and
// not in CI, which has the proxy and must run this test.
func startKube(t *testing.T) *kubeCluster {
	t.Helper()
	build := exec.Command("bash", "../test/kube/build.sh")
	if out, err := build.CombinedOutput(); err != nil {
		msg := fmt.Sprintf("kube-apiserver and etcd could not be built (test/kube/build.sh: %v); the Kubernetes e2e test needs them:\n%s", err, tail(out, 2000))
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir := filepath.Join(t.TempDir(), "kube")
	up := exec.Command("bash", "../test/kube/up.sh")
	up.Env = append(os.Environ(), "PAUSEWATCH_KUBE_DIR="+dir, fmt.Sprintf("PAUSEWATCH_KUBE_API_PORT=%d", kubeAPIPort))
	var stderr bytes.Buffer
	up.Stderr = &stderr
	start := time.Now()
	out, err := up.Output()
	t.Cleanup(func() {
		down := exec.Command("bash", "../test/kube/down.sh")
		down.Env = append(os.Environ(), "PAUSEWATCH_KUBE_DIR="+dir)
		if out, err := down.CombinedOutput(); err != nil {
			t.Errorf("down.sh: %v\n%s", err, out)
		}
	})
	if err != nil {
		t.Fatalf("up.sh: %v\n%s", err, stderr.String())
	}
	k := &kubeCluster{dir: dir}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := lines[len(lines)-1]
	var ok bool
	if k.admin, ok = strings.CutPrefix(last, "KUBECONFIG="); !ok {
		t.Fatalf("up.sh's last line is %q, want KUBECONFIG=<path>", last)
	}
	k.agentKC = filepath.Join(dir, "agent.kubeconfig")
	t.Logf("API server and etcd up in %v", time.Since(start).Round(10*time.Millisecond))
	cfg, err := clientcmd.BuildConfigFromFlags("", k.admin)
	if err != nil {
		t.Fatal(err)
	}
	// client-go's default of 5 requests/s would make the test (and the
	// 50 changes/s measurement) wait on the client, not the server.
	cfg.QPS, cfg.Burst = 500, 1000
	if k.cs, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	return k
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// applyAgentRBAC creates the Namespace, ServiceAccount, ClusterRole and
// ClusterRoleBinding of deploy/kubernetes/pausewatch.yaml (rendered from the chart), so the agent runs with the
// rights the manifest grants and nothing more.
func (k *kubeCluster) applyAgentRBAC(t *testing.T, ctx context.Context) {
	t.Helper()
	b, err := os.ReadFile("../deploy/kubernetes/pausewatch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := k8syaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	n := 0
	for {
		var doc json.RawMessage
		if err := dec.Decode(&doc); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("pausewatch.yaml: %v", err)
		}
		if d := bytes.TrimSpace(doc); len(d) == 0 || string(d) == "null" {
			continue // a document of comments only
		}
		var meta metav1.TypeMeta
		decodeJSON(t, doc, &meta)
		switch meta.Kind {
		case "Namespace":
			var o corev1.Namespace
			decodeJSON(t, doc, &o)
			_, err = k.cs.CoreV1().Namespaces().Create(ctx, &o, metav1.CreateOptions{})
		case "ServiceAccount":
			var o corev1.ServiceAccount
			decodeJSON(t, doc, &o)
			_, err = k.cs.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, &o, metav1.CreateOptions{})
		case "ClusterRole":
			var o rbacv1.ClusterRole
			decodeJSON(t, doc, &o)
			_, err = k.cs.RbacV1().ClusterRoles().Create(ctx, &o, metav1.CreateOptions{})
		case "ClusterRoleBinding":
			var o rbacv1.ClusterRoleBinding
			decodeJSON(t, doc, &o)
			_, err = k.cs.RbacV1().ClusterRoleBindings().Create(ctx, &o, metav1.CreateOptions{})
		default:
			continue
		}
		if err != nil {
			t.Fatalf("create %s from pausewatch.yaml: %v", meta.Kind, err)
		}
		n++
	}
	if n != 4 {
		t.Fatalf("pausewatch.yaml: %d of Namespace, ServiceAccount, ClusterRole, ClusterRoleBinding, want 4", n)
	}
}

// decodeJSON decodes strictly: a field the type does not have is a
// mistake in the manifest.
func decodeJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if _, isMeta := v.(*metav1.TypeMeta); isMeta {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatal(err)
		}
		return
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		t.Fatalf("pausewatch.yaml: %v", err)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("decode %s: %v", url, err)
	}
}

// cgroupRoot is where the test makes kubelet-style cgroups: a cgroup v1
// controller hierarchy (this machine mounts v1), else the v2 root.
func cgroupRoot(t *testing.T) string {
	t.Helper()
	for _, c := range []string{"/sys/fs/cgroup/pids", "/sys/fs/cgroup/freezer", "/sys/fs/cgroup/cpu"} {
		if _, err := os.Stat(filepath.Join(c, "cgroup.procs")); err == nil {
			return c
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return "/sys/fs/cgroup"
	}
	t.Fatal("no cgroup v1 controller or v2 root mounted under /sys/fs/cgroup")
	return ""
}

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func newUID(t *testing.T) string {
	h := randHex(t, 16)
	return h[:8] + "-" + h[8:12] + "-4" + h[13:16] + "-8" + h[17:20] + "-" + h[20:32]
}

// container is one process in a kubelet-named cgroup.
type container struct {
	uid, id, name string
	cgroup        string
	pid           int
}

// Cgroup layouts, as the kubelet (cgroupfs or systemd driver) and the
// container runtime name them.
func cgroupfsContainerd(root, uid, id string) string {
	return filepath.Join(root, "kubepods", "burstable", "pod"+uid, id)
}

func systemdContainerd(root, uid, id string) string {
	u := strings.ReplaceAll(uid, "-", "_")
	return filepath.Join(root, "kubepods.slice", "kubepods-besteffort.slice", "kubepods-besteffort-pod"+u+".slice", "cri-containerd-"+id+".scope")
}

func cgroupfsCRIO(root, uid, id string) string {
	return filepath.Join(root, "kubepods", "besteffort", "pod"+uid, "crio-"+id)
}

// startInCgroup makes the cgroup, then runs argv inside it: a shell moves
// itself in and execs the program, as runc does, so the program is in its
// container's cgroup from its first instruction (the agent reads
// /proc/<pid>/cgroup when it sees the exec).
func startInCgroup(t *testing.T, c *container, argv ...string) {
	t.Helper()
	if err := os.MkdirAll(c.cgroup, 0o755); err != nil {
		t.Fatalf("mkdir cgroup: %v", err)
	}
	t.Cleanup(func() {
		// Deepest first; the process is dead by now (its cleanup ran
		// first). Shared parents (kubepods) stay if in use.
		for d := c.cgroup; strings.Contains(d, "kubepods"); d = filepath.Dir(d) {
			syscall.Rmdir(d)
		}
	})
	script := `echo $$ > "$0/cgroup.procs" && exec "$@"`
	cmd := exec.Command("sh", append([]string{"-c", script, c.cgroup}, argv...)...)
	// The service name must come from Kubernetes, not the environment.
	cmd.Env = withoutServiceEnv(os.Environ())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", argv, err)
	}
	c.pid = cmd.Process.Pid
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	go io.Copy(io.Discard, bufio.NewReader(out))
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", c.pid))
	if err == nil && !strings.Contains(string(b), c.id) {
		// The shell may not have moved itself yet; by exec it has.
		time.Sleep(100 * time.Millisecond)
	}
}

func withoutServiceEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "OTEL_SERVICE_NAME=") {
			out = append(out, kv)
		}
	}
	return out
}

func controller(kind, name string, uid types.UID) []metav1.OwnerReference {
	yes := true
	return []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: kind, Name: name, UID: uid, Controller: &yes, BlockOwnerDeletion: &yes}}
}

// createPod creates the pod as its controller would (no status), and the
// returned function reports its container running, as the kubelet does
// once the runtime has started it.
func (k *kubeCluster) createPod(t *testing.T, ctx context.Context, ns, name string, c *container, owners []metav1.OwnerReference, labels map[string]string, runtimeScheme string) func() {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: types.UID(c.uid), OwnerReferences: owners, Labels: labels},
		Spec: corev1.PodSpec{NodeName: kubeNode, Containers: []corev1.Container{{Name: c.name, Image: "example.invalid/" + c.name + ":1"}},
			AutomountServiceAccountToken: new(bool)},
	}
	// metadata.uid is the API server's to choose: the pod gets one, and
	// the cgroup is named after it below (as the kubelet names it).
	pod.UID = ""
	uid := c.uid
	got, err := k.cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s: %v", name, err)
	}
	if uid == "" {
		c.uid = string(got.UID)
	}
	return func() {
		t.Helper()
		got.Status = corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{
			Name: c.name, ContainerID: runtimeScheme + "://" + c.id, Ready: true, Image: "example.invalid/" + c.name + ":1",
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}},
		}}}
		if _, err := k.cs.CoreV1().Pods(ns).UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("update pod %s status: %v", name, err)
		}
	}
}

// seriesOf returns the label sets of every process series of pid.
func seriesOf(mfs map[string]*dto.MetricFamily, pid int) []map[string]string {
	var out []map[string]string
	for _, name := range []string{"pausewatch_pauses_total", "pausewatch_pause_duration_seconds"} {
		for _, m := range mfs[name].GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["pid"] == strconv.Itoa(pid) {
				out = append(out, l)
			}
		}
	}
	return out
}

// scalar returns the value of a gauge or counter without labels, or -1.
func scalar(mfs map[string]*dto.MetricFamily, name string) float64 {
	if mf := mfs[name]; mf != nil && len(mf.GetMetric()) > 0 {
		m := mf.GetMetric()[0]
		if m.GetGauge() != nil {
			return m.GetGauge().GetValue()
		}
		return m.GetCounter().GetValue()
	}
	return -1
}

// waitLabelled waits until pid has series, and checks that every series it
// ever had carries want (so none was born without its pod labels).
func waitLabelled(t *testing.T, a *agentProc, pid int, want map[string]string, within time.Duration) float64 {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		mfs := a.metrics(t)
		ss := seriesOf(mfs, pid)
		for _, l := range ss {
			for k, v := range want {
				if l[k] != v {
					t.Fatalf("pid %d has a series with %s=%q, want %q: %v", pid, k, l[k], v, l)
				}
			}
		}
		if n := counter(mfs, "pausewatch_pauses_total", map[string]string{"pid": strconv.Itoa(pid)}); len(ss) > 0 && n > 0 {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d: no pause series within %v", pid, within)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestKubernetesIdentity(t *testing.T) {
	requireRoot(t)
	if testing.Short() {
		t.Skip("starts an API server")
	}
	k := startKube(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	k.applyAgentRBAC(t, ctx)
	for _, ns := range []string{"shop", "batch"} {
		if _, err := k.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// No controller-manager runs: the default ServiceAccount pods
		// need is made here.
		if _, err := k.cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// A Deployment and its ReplicaSet, as the Deployment controller makes
	// them; a StatefulSet; a DaemonSet.
	dep, err := k.cs.AppsV1().Deployments("shop").Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "api"},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "api"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "api", Image: "example.invalid/api:1"}}}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const hash = "6d8f9c7b5"
	rsLabels := map[string]string{"app": "api", "pod-template-hash": hash}
	rs, err := k.cs.AppsV1().ReplicaSets("shop").Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "api-" + hash, Labels: rsLabels, OwnerReferences: controller("Deployment", "api", dep.UID)},
		Spec: appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: rsLabels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: rsLabels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "api", Image: "example.invalid/api:1"}}}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	root := cgroupRoot(t)
	// The executable's name is neither a Kubernetes name nor the Go
	// toolchain's "go", so a series named after it would stand out.
	exe := filepath.Join(buildDir, "pwk8s-server")
	if err := exec.Command("cp", exampleGoBin, exe).Run(); err != nil {
		t.Fatal(err)
	}
	goArgs := []string{exe, "-churn-mb", "2"}

	a := launchAgent(t, kubeAgentPort, nil, agentBin, []string{"KUBECONFIG=", "NODE_NAME="},
		"--kubeconfig", k.agentKC, "--node-name", kubeNode, "--pid-label", "--pid-series-ttl", "3s", "--k8s-identity-wait", "5s",
		"--runtimes", "go,python")
	a.waitReady(t)

	// 1. Deployment pod, containerd, cgroupfs driver. The pod exists
	// first (the ReplicaSet controller made it); the kubelet reports the
	// container id a second after the process started.
	api := &container{id: randHex(t, 32), name: "api"}
	reportAPI := k.createPod(t, ctx, "shop", "api-"+hash+"-x7k2p", api, controller("ReplicaSet", rs.Name, rs.UID), rsLabels, "containerd")
	api.cgroup = cgroupfsContainerd(root, api.uid, api.id)
	startInCgroup(t, api, append(goArgs, "-listen", "127.0.0.1:19854")...)
	time.Sleep(time.Second)
	reportAPI()

	// 2. StatefulSet pod with an app.kubernetes.io/name label,
	// containerd, systemd driver; reported running before the agent sees
	// a pause.
	ledger := &container{id: randHex(t, 32), name: "ledger"}
	reportLedger := k.createPod(t, ctx, "shop", "ledger-0", ledger, controller("StatefulSet", "ledger", types.UID(newUID(t))),
		map[string]string{"app.kubernetes.io/name": "ledger-svc"}, "containerd")
	reportLedger()
	ledger.cgroup = systemdContainerd(root, ledger.uid, ledger.id)
	startInCgroup(t, ledger, append(goArgs, "-listen", "127.0.0.1:19855")...)

	// 3. Python under CRI-O (cgroupfs), in a DaemonSet pod that the API
	// server hears of only 2 s after the process started: its series must
	// still be born with its pod labels.
	// The API server chooses a pod's uid, and this pod does not exist
	// yet, so the pod cgroup's uid is one the API server will not give it:
	// the agent must find the pod by its container id, as it must for any
	// layout that names no pod.
	worker := &container{id: randHex(t, 32), uid: newUID(t), name: "worker-ctr"}
	worker.cgroup = cgroupfsCRIO(root, worker.uid, worker.id)
	startInCgroup(t, worker, "/usr/bin/python3.11", "python/server.py", "19856", "--pause-every", "0.2")
	time.Sleep(2 * time.Second)
	reportWorker := k.createPod(t, ctx, "batch", "worker-abcde", worker, controller("DaemonSet", "worker", types.UID(newUID(t))), nil, "cri-o")
	reportWorker()

	for _, tc := range []struct {
		c    *container
		want map[string]string
	}{
		{api, map[string]string{"namespace": "shop", "pod": "api-" + hash + "-x7k2p", "container": "api", "service": "api"}},
		{ledger, map[string]string{"namespace": "shop", "pod": "ledger-0", "container": "ledger", "service": "ledger-svc"}},
		{worker, map[string]string{"namespace": "batch", "pod": "worker-abcde", "container": "worker-ctr", "service": "worker"}},
	} {
		waitLabelled(t, a, tc.c.pid, tc.want, 20*time.Second)
		t.Logf("pid %d: %v", tc.c.pid, tc.want)
	}
	var apiRow *processRow
	for _, p := range a.kubeProcesses(t) {
		if p.PID == api.pid {
			apiRow = &p
		}
	}
	if apiRow == nil || apiRow.WorkloadKind != "Deployment" || apiRow.Workload != "api" || apiRow.PodUID != api.uid {
		t.Errorf("/api/processes row of the Deployment's process: %+v", apiRow)
	}
	mfs := a.metrics(t)
	if up := scalar(mfs, "pausewatch_k8s_api_reachable"); up != 1 {
		t.Errorf("pausewatch_k8s_api_reachable = %v, want 1", up)
	}
	misses0 := scalar(mfs, "pausewatch_k8s_lookup_misses_total")
	if misses0 != 0 {
		t.Errorf("misses before the outage = %v, want 0", misses0)
	}

	// 4. The ledger pod is deleted while its process runs (the kubelet
	// has not killed it yet): the process keeps its identity.
	if err := k.cs.CoreV1().Pods("shop").Delete(ctx, "ledger-0", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}

	// 5. The API server stops. Known processes keep exporting with their
	// last identity; a container started during the outage is exported,
	// after the wait, without one, and counted.
	b, err := os.ReadFile(filepath.Join(k.dir, "kube-apiserver.pid"))
	if err != nil {
		t.Fatal(err)
	}
	apiPid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	before := counter(a.metrics(t), "pausewatch_pauses_total", map[string]string{"pid": strconv.Itoa(api.pid)})
	ledgerBefore := counter(a.metrics(t), "pausewatch_pauses_total", map[string]string{"pid": strconv.Itoa(ledger.pid)})
	if err := syscall.Kill(apiPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for scalar(a.metrics(t), "pausewatch_k8s_api_reachable") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("pausewatch_k8s_api_reachable still 1 30 s after the API server was killed")
		}
		time.Sleep(200 * time.Millisecond)
	}
	orphan := &container{id: randHex(t, 32), uid: newUID(t), name: "orphan"}
	orphan.cgroup = cgroupfsContainerd(root, orphan.uid, orphan.id)
	startInCgroup(t, orphan, append(goArgs, "-listen", "127.0.0.1:19857")...)
	started := time.Now()
	waitLabelled(t, a, orphan.pid, map[string]string{"pod": "", "namespace": "", "service": "pwk8s-server"}, 20*time.Second)
	if waited := time.Since(started); waited < 4*time.Second {
		t.Errorf("the orphan's series appeared %v after its start, before the 5 s wait ended", waited)
	}
	time.Sleep(time.Second)
	mfs = a.metrics(t)
	if m := scalar(mfs, "pausewatch_k8s_lookup_misses_total"); m <= misses0 {
		t.Errorf("pausewatch_k8s_lookup_misses_total = %v during the outage, want above %v", m, misses0)
	}
	after := waitLabelled(t, a, api.pid, map[string]string{"namespace": "shop", "pod": "api-" + hash + "-x7k2p", "service": "api"}, 5*time.Second)
	ledgerAfter := waitLabelled(t, a, ledger.pid, map[string]string{"pod": "ledger-0", "service": "ledger-svc"}, 5*time.Second)
	if after <= before || ledgerAfter <= ledgerBefore {
		t.Errorf("pauses during the outage: api %v -> %v, ledger (pod deleted) %v -> %v; want both rising", before, after, ledgerBefore, ledgerAfter)
	}
	if !strings.Contains(a.logs.String(), "kubernetes API server unreachable") {
		t.Error("no log line says the API server is unreachable")
	}

	// 6. A process whose pod was deleted exits: its series go after
	// --pid-series-ttl, as every exited process's do.
	syscall.Kill(ledger.pid, syscall.SIGKILL)
	deadline = time.Now().Add(15 * time.Second)
	for len(seriesOf(a.metrics(t), ledger.pid)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("series of the exited ledger process still there 15 s after its exit (--pid-series-ttl 3s)")
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// processRow is the part of /api/processes this test reads.
type processRow struct {
	PID          int    `json:"pid"`
	Namespace    string `json:"namespace"`
	Pod          string `json:"pod"`
	PodUID       string `json:"pod_uid"`
	Container    string `json:"container"`
	WorkloadKind string `json:"workload_kind"`
	Workload     string `json:"workload"`
	Service      string `json:"service"`
	Excluded     string `json:"excluded"`
}

func (a *agentProc) kubeProcesses(t *testing.T) []processRow {
	t.Helper()
	var rows []processRow
	getJSON(t, a.url+"/api/processes", &rows)
	return rows
}
