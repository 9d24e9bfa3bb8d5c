package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/pausewatch/pausewatch/agent"
)

// Pod is what the agent keeps of one pod: the fields labels, attributes,
// the service name and selection use, and nothing else. Every string has
// passed agent.LabelValue: a pod's creator chooses them, like a process
// chooses its command line.
type Pod struct {
	UID, Namespace, Name string
	// Labels are kept whole (selection matches on any of them), values
	// sanitised; annotations, spec and most of status are dropped.
	Labels       map[string]string
	WorkloadKind string // Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob, or "" (a bare pod)
	Workload     string
	// Containers maps container ids (without the runtime:// prefix) to
	// container names, from status.(init|ephemeral)ContainerStatuses.
	Containers map[string]string
}

// ContainerName returns the name of the pod's container with this id.
func (p *Pod) ContainerName(id string) string { return p.Containers[id] }

// Pods is a node-scoped view of the API server's pods: a client-go
// informer listing and watching only the pods whose spec.nodeName is this
// node, each cut down to a Pod as it arrives, indexed by uid and by
// container id. Deleted pods stay findable for DeletedTTL, so events still
// queued for a pod's last processes resolve.
type Pods struct {
	log        *slog.Logger
	informer   cache.SharedIndexInformer
	deletedTTL time.Duration

	mu        sync.RWMutex
	byUID     map[string]*Pod
	byCID     map[string]*Pod
	deleted   map[string]time.Time // uid -> when the pod was deleted
	changed   chan struct{}        // one pending signal: a pod was added or changed
	up        atomic.Bool          // last list or watch call succeeded
	errors    atomic.Uint64        // list and watch calls that failed
	downSince time.Time            // guarded by mu; zero while up
}

// DefaultDeletedTTL is how long a deleted pod's identity stays findable.
const DefaultDeletedTTL = 5 * time.Minute

// ClientConfig finds the API server: --kubeconfig, else KUBECONFIG, else
// the in-cluster service account. ok is false off Kubernetes: no flag, no
// variable, and not in a pod (no KUBERNETES_SERVICE_HOST), and then
// nothing tries to reach an API server.
func ClientConfig(kubeconfig string) (cfg *rest.Config, ok bool, err error) {
	if kubeconfig == "" {
		kubeconfig = os.Getenv("KUBECONFIG")
	}
	if kubeconfig != "" {
		// The first file of a KUBECONFIG list, as kubectl merges them.
		rules := &clientcmd.ClientConfigLoadingRules{Precedence: strings.Split(kubeconfig, string(os.PathListSeparator))}
		cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
		if err != nil {
			return nil, true, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
		}
		return cfg, true, nil
	}
	if os.Getenv("KUBERNETES_SERVICE_HOST") == "" {
		return nil, false, nil
	}
	cfg, err = rest.InClusterConfig()
	if err != nil {
		return nil, true, fmt.Errorf("in-cluster config: %w", err)
	}
	return cfg, true, nil
}

// podScheme knows core/v1 only: the agent lists and watches pods and
// nothing else. client-go's typed clientset (k8s.io/client-go/kubernetes)
// registers every API group at start, linking and touching about 12 MiB
// of code and type data the agent never uses (docs/deploy.md, Resources);
// this one is built on Kubernetes only, when the informer is made.
var podScheme = sync.OnceValue(func() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := corev1.AddToScheme(s); err != nil {
		panic(err) // a static registration: fails only if client-go's types are broken
	}
	return s
})

// NewPods makes the informer of this node's pods; nothing is sent to the
// API server before Run.
func NewPods(cfg *rest.Config, node string, log *slog.Logger) (*Pods, error) {
	if node == "" {
		return nil, errors.New("no node name: set --node-name or NODE_NAME (the downward API's spec.nodeName), so that only this node's pods are watched")
	}
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "pausewatch"
	// Protobuf halves what the list and the watch cost to decode.
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cfg.APIPath = "/api"
	cfg.GroupVersion = &corev1.SchemeGroupVersion
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(podScheme()).WithoutConversion()
	rc, err := rest.RESTClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	params := runtime.NewParameterCodec(podScheme())
	listPods := func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
		l := &corev1.PodList{}
		return l, rc.Get().Resource("pods").VersionedParams(&o, params).Do(ctx).Into(l)
	}
	watchPods := func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
		o.Watch = true
		return rc.Get().Resource("pods").VersionedParams(&o, params).Watch(ctx)
	}
	return newPods(listPods, watchPods, rc, node, log), nil
}

// newPods makes the informer over list and watch calls of all pods;
// client is asked whether it can stream the initial list (client-go's
// fake cannot).
func newPods(listPods cache.ListWithContextFunc, watchPods cache.WatchFuncWithContext, client any, node string, log *slog.Logger) *Pods {
	p := &Pods{
		log:        log,
		deletedTTL: DefaultDeletedTTL,
		byUID:      map[string]*Pod{},
		byCID:      map[string]*Pod{},
		deleted:    map[string]time.Time{},
		changed:    make(chan struct{}, 1),
	}
	sel := fields.OneTermEqualSelector("spec.nodeName", node).String()
	// list and watch report whether the API server answers: the informer
	// itself retries quietly, and an SRE needs to see that the agent's
	// identities are going stale.
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			l, err := listPods(ctx, o)
			p.reachable(err)
			return l, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			w, err := watchPods(ctx, o)
			p.reachable(err)
			return w, err
		},
	}
	// A client that cannot stream the initial list (client-go's fake)
	// says so, and the reflector then lists instead.
	p.informer = cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(lw, client), &corev1.Pod{}, 0, cache.Indexers{})
	// Only the transform's output is kept in the informer's store.
	p.informer.SetTransform(slimPod)
	p.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { p.upsert(o) },
		UpdateFunc: func(_, o any) { p.upsert(o) },
		DeleteFunc: p.remove,
	})
	p.informer.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		// An expired resource version is the API server answering: the
		// reflector lists again, and that is not an outage.
		if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			return
		}
		p.reachable(err)
	})
	return p
}

// Run lists and watches until ctx is done.
func (p *Pods) Run(ctx context.Context) {
	go p.expire(ctx)
	p.informer.RunWithContext(ctx)
}

// Synced says whether the first list has been stored.
func (p *Pods) Synced() bool { return p.informer.HasSynced() }

// Changed is signalled (without blocking, one pending signal) whenever a
// pod is added or its containers change.
func (p *Pods) Changed() <-chan struct{} { return p.changed }

// Reachable says whether the last list or watch call succeeded.
func (p *Pods) Reachable() bool { return p.up.Load() }

// Errors is the number of list and watch calls that failed.
func (p *Pods) Errors() uint64 { return p.errors.Load() }

// Len is the number of pods known, deleted ones still kept included.
func (p *Pods) Len() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.byUID)
}

func (p *Pods) reachable(err error) {
	if err == nil || errors.Is(err, context.Canceled) {
		if !p.up.Swap(true) {
			p.mu.Lock()
			since := p.downSince
			p.downSince = time.Time{}
			p.mu.Unlock()
			if !since.IsZero() {
				p.log.Info("kubernetes API server reachable again; pod identities are current", "down_for", time.Since(since).Round(time.Second))
			}
		}
		return
	}
	p.errors.Add(1)
	p.mu.Lock()
	first := p.downSince.IsZero()
	if first {
		p.downSince = time.Now()
	}
	p.mu.Unlock()
	p.up.Store(false)
	if first {
		// Once per outage: the informer retries with back-off, and one
		// line per retry would flood the node's logs.
		p.log.Warn("kubernetes API server unreachable; processes keep their last known pod identity, new containers' processes are exported without one (pausewatch_k8s_lookup_misses_total)", "err", err)
	}
}

// Lookup finds a pod by uid, else by container id.
func (p *Pods) Lookup(podUID, containerID string) *Pod {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if pod := p.byUID[podUID]; pod != nil && podUID != "" {
		return pod
	}
	if containerID != "" {
		return p.byCID[containerID]
	}
	return nil
}

func (p *Pods) upsert(o any) {
	pod, ok := o.(*corev1.Pod)
	if !ok {
		return
	}
	np := podOf(pod)
	p.mu.Lock()
	if old := p.byUID[np.UID]; old != nil {
		for cid := range old.Containers {
			delete(p.byCID, cid)
		}
	}
	p.byUID[np.UID] = np
	for cid := range np.Containers {
		p.byCID[cid] = np
	}
	delete(p.deleted, np.UID)
	p.mu.Unlock()
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

func (p *Pods) remove(o any) {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	pod, ok := o.(*corev1.Pod)
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.byUID[string(pod.UID)]; ok {
		p.deleted[string(pod.UID)] = time.Now()
	}
}

// expire forgets deleted pods DeletedTTL after their deletion.
func (p *Pods) expire(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			p.expireAt(now)
		}
	}
}

func (p *Pods) expireAt(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for uid, at := range p.deleted {
		if now.Sub(at) < p.deletedTTL {
			continue
		}
		if pod := p.byUID[uid]; pod != nil {
			for cid := range pod.Containers {
				if p.byCID[cid] == pod {
					delete(p.byCID, cid)
				}
			}
		}
		delete(p.byUID, uid)
		delete(p.deleted, uid)
	}
}

// slimPod is the informer's transform: a pod keeps its name, namespace,
// uid, labels, owners and containers' names and ids; managed fields,
// annotations, the spec and the rest of the status (often 90% of a pod's
// bytes) are dropped before the informer stores it.
func slimPod(o any) (any, error) {
	pod, ok := o.(*corev1.Pod)
	if !ok {
		return o, nil // a DeletedFinalStateUnknown: its object was slimmed when stored
	}
	slim := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID,
			ResourceVersion: pod.ResourceVersion, Labels: pod.Labels,
		},
	}
	for _, o := range pod.OwnerReferences {
		if o.Controller != nil && *o.Controller {
			slim.OwnerReferences = []metav1.OwnerReference{{Kind: o.Kind, Name: o.Name, Controller: o.Controller}}
		}
	}
	slim.Spec.NodeName = pod.Spec.NodeName
	keep := func(st []corev1.ContainerStatus) []corev1.ContainerStatus {
		out := make([]corev1.ContainerStatus, 0, len(st))
		for _, c := range st {
			out = append(out, corev1.ContainerStatus{Name: c.Name, ContainerID: c.ContainerID})
		}
		return out
	}
	slim.Status.ContainerStatuses = keep(pod.Status.ContainerStatuses)
	slim.Status.InitContainerStatuses = keep(pod.Status.InitContainerStatuses)
	slim.Status.EphemeralContainerStatuses = keep(pod.Status.EphemeralContainerStatuses)
	return slim, nil
}

// podOf makes the agent's Pod of a (slimmed) API object; every string
// goes through agent.LabelValue.
func podOf(pod *corev1.Pod) *Pod {
	p := &Pod{
		UID:        agent.LabelValue(string(pod.UID)),
		Namespace:  agent.LabelValue(pod.Namespace),
		Name:       agent.LabelValue(pod.Name),
		Labels:     make(map[string]string, len(pod.Labels)),
		Containers: map[string]string{},
	}
	for k, v := range pod.Labels {
		p.Labels[k] = agent.LabelValue(v)
	}
	kind, name := workload(pod)
	p.WorkloadKind, p.Workload = agent.LabelValue(kind), agent.LabelValue(name)
	for _, st := range [][]corev1.ContainerStatus{pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses, pod.Status.EphemeralContainerStatuses} {
		for _, c := range st {
			if _, id, ok := strings.Cut(c.ContainerID, "://"); ok && id != "" {
				p.Containers[id] = agent.LabelValue(c.Name)
			}
		}
	}
	return p
}

// cronJobJob is the name the CronJob controller gives its Jobs:
// <cronjob>-<scheduled time in minutes since the epoch>.
var cronJobJob = regexp.MustCompile(`^(.+)-([0-9]{8,})$`)

// workload names the pod's controller, one level up where the pod's own
// fields allow it: the agent may list and watch pods only, so a
// ReplicaSet's Deployment is read from the ReplicaSet's name (the
// Deployment's name, a dash and the pod-template-hash label the pod
// carries), and a Job's CronJob from the Job's name (the CronJob's name, a
// dash and the scheduled minute).
func workload(pod *corev1.Pod) (kind, name string) {
	var ref *metav1.OwnerReference
	for i, o := range pod.OwnerReferences {
		if o.Controller != nil && *o.Controller {
			ref = &pod.OwnerReferences[i]
		}
	}
	if ref == nil {
		return "", ""
	}
	switch ref.Kind {
	case "ReplicaSet":
		if h := pod.Labels["pod-template-hash"]; h != "" {
			if d, ok := strings.CutSuffix(ref.Name, "-"+h); ok && d != "" {
				return "Deployment", d
			}
		}
	case "Job":
		if m := cronJobJob.FindStringSubmatch(ref.Name); m != nil {
			return "CronJob", m[1]
		}
	}
	return ref.Kind, ref.Name
}
