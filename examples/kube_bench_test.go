package examples

// The informer's cost with 1000 pods on the node and 50 pod changes per
// second, against the real API server. Not part of `make test` (it takes
// a few minutes): PAUSEWATCH_KUBE_BENCH=1 go test ./examples -run TestKubeInformerCost -v

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/pausewatch/pausewatch/agent"
	"github.com/pausewatch/pausewatch/agent/kube"
)

// TestKubeInformerHelper is the measured process: the agent's pod
// informer and identity stage alone, so that its memory and CPU are not
// mixed with the load generator's or the BPF source's.
func TestKubeInformerHelper(t *testing.T) {
	kc := os.Getenv("PAUSEWATCH_INFORMER_HELPER")
	if kc == "" {
		t.Skip("helper process of TestKubeInformerCost")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	pods, err := kube.NewPods(cfg, kubeNode, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	go pods.Run(ctx)
	ident := kube.New(kube.Options{Pods: pods})
	go ident.Wrap(idleSource{}).Run(ctx, make(chan agent.Event))
	for {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Printf("pods=%d heap_inuse=%d\n", pods.Len(), ms.HeapInuse)
		time.Sleep(time.Second)
	}
}

type idleSource struct{}

func (idleSource) Run(ctx context.Context, _ chan<- agent.Event) error {
	<-ctx.Done()
	return nil
}

// procCPU returns user+system clock ticks of pid, and its RSS in kB.
func procCPU(t *testing.T, pid int) (ticks uint64, rssKB uint64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseUint(f[11], 10, 64)
	s, _ := strconv.ParseUint(f[12], 10, 64)
	st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			rssKB, _ = strconv.ParseUint(strings.Fields(v)[0], 10, 64)
		}
	}
	return u + s, rssKB
}

func TestKubeInformerCost(t *testing.T) {
	if os.Getenv("PAUSEWATCH_KUBE_BENCH") == "" {
		t.Skip("measurement, not a check: PAUSEWATCH_KUBE_BENCH=1 to run")
	}
	const nPods, otherNode, rate, seconds = 1000, 1000, 50, 60
	k := startKube(t)
	ctx := context.Background()
	for _, ns := range []string{"bench"} {
		k.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		k.cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	}
	mk := func(i int, node string) *corev1.Pod {
		yes := true
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-app-%d-7d9f8c6b5-x%04d", node, i%50, i), Namespace: "bench",
				Labels:          map[string]string{"app": fmt.Sprint("app-", i%50), "pod-template-hash": "7d9f8c6b5", "app.kubernetes.io/name": fmt.Sprint("app-", i%50)},
				Annotations:     map[string]string{"kubectl.kubernetes.io/last-applied-configuration": strings.Repeat("x", 2000)},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: fmt.Sprintf("app-%d-7d9f8c6b5", i%50), UID: "u", Controller: &yes}}},
			Spec: corev1.PodSpec{NodeName: node, AutomountServiceAccountToken: new(bool), Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app:1",
				Env: []corev1.EnvVar{{Name: "A", Value: strings.Repeat("v", 200)}}}}},
		}
	}
	created := make([]*corev1.Pod, 0, nPods)
	for i := range nPods + otherNode {
		node := kubeNode
		if i >= nPods {
			node = "other-node" // not watched: the field selector keeps them out
		}
		p, err := k.cs.CoreV1().Pods("bench").Create(ctx, mk(i, node), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if node == kubeNode {
			created = append(created, p)
		}
	}
	// The informer, as the agent runs it, in a process of its own.
	helper := exec.Command(os.Args[0], "-test.run=^TestKubeInformerHelper$", "-test.timeout=0")
	helper.Env = append(os.Environ(), "PAUSEWATCH_INFORMER_HELPER="+k.admin, "GOMAXPROCS=2")
	out, _ := helper.StdoutPipe()
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { helper.Process.Kill(); helper.Wait() })
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	last := func(want int) string {
		deadline := time.After(60 * time.Second)
		for {
			select {
			case l := <-lines:
				if strings.HasPrefix(l, fmt.Sprintf("pods=%d ", want)) {
					return l
				}
			case <-deadline:
				t.Fatalf("helper never reported %d pods", want)
			}
		}
	}
	t.Logf("first report (before the list): %s", <-lines)
	t.Logf("synced: %s", last(nPods))
	ticks0, rss0 := procCPU(t, helper.Process.Pid)
	// 50 changes per second: status updates (a container restarting),
	// each one a watch event the informer decodes, slims and indexes.
	start := time.Now()
	tick := time.NewTicker(time.Second / rate)
	n := 0
	for time.Since(start) < seconds*time.Second {
		<-tick.C
		p := created[n%nPods]
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", ContainerID: fmt.Sprintf("containerd://%064x", n),
			Image: "example.invalid/app:1", RestartCount: int32(n / nPods)}}
		up, err := k.cs.CoreV1().Pods("bench").UpdateStatus(ctx, p, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		created[n%nPods] = up
		n++
	}
	elapsed := time.Since(start)
	ticks1, rss1 := procCPU(t, helper.Process.Pid)
	l := last(nPods)
	tps := 100.0 // USER_HZ
	t.Logf("%d pods on the node (+%d elsewhere), %d status changes in %v (%.1f/s)", nPods, otherNode, n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
	t.Logf("informer process: CPU %.2f%% of one core (%.2f s), RSS %d -> %d kB, %s",
		100*float64(ticks1-ticks0)/tps/elapsed.Seconds(), float64(ticks1-ticks0)/tps, rss0, rss1, l)
}
