package otlp

import (
	"fmt"
	"testing"

	"github.com/pausewatch/pausewatch/agent"
)

func TestK8sAttrs(t *testing.T) {
	for _, tc := range []struct {
		p    agent.Process
		want string
	}{
		{agent.Process{}, "[]"},
		{agent.Process{ContainerID: "c1"}, "[container.id=c1]"},
		{agent.Process{ContainerID: "c1", Namespace: "shop", Pod: "api-5f-x", PodUID: "u1", Container: "api", WorkloadKind: "Deployment", Workload: "api"},
			"[container.id=c1 k8s.namespace.name=shop k8s.pod.name=api-5f-x k8s.pod.uid=u1 k8s.container.name=api k8s.deployment.name=api]"},
		{agent.Process{Namespace: "ops", Pod: "b-29012345-x", WorkloadKind: "CronJob", Workload: "b"}, "[k8s.namespace.name=ops k8s.pod.name=b-29012345-x k8s.cronjob.name=b]"},
		{agent.Process{Namespace: "ops", Pod: "p", WorkloadKind: "Unknown", Workload: "x"}, "[k8s.namespace.name=ops k8s.pod.name=p]"},
	} {
		var got []string
		for _, a := range k8sAttrs(tc.p) {
			got = append(got, string(a.Key)+"="+a.Value.AsString())
		}
		if s := fmt.Sprint(got); s != tc.want {
			t.Errorf("%+v: %s, want %s", tc.p, s, tc.want)
		}
	}
}
