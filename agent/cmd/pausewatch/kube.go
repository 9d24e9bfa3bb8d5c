package main

import (
	"context"
	"fmt"
	"log/slog"

	"go.yaml.in/yaml/v3"

	"github.com/pausewatch/pausewatch/agent/kube"
)

// selectionConfig reads the config file's `selection:` (which processes
// are reported on); nil when there is no file or no selection in it.
func selectionConfig(path string) (*kube.Selection, error) {
	if path == "" {
		return nil, nil
	}
	b, err := readConfig(path)
	if err != nil {
		return nil, err
	}
	var file map[string]yaml.Node
	if err := yaml.Unmarshal(b, &file); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	n, ok := file["selection"]
	if !ok {
		return nil, nil
	}
	sel, err := kube.ParseSelection(&n)
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return sel, nil
}

// newIdentity starts the pod informer when the agent runs on Kubernetes
// (--kubeconfig, KUBECONFIG or in a pod) and returns the identity stage.
// Off Kubernetes nothing is contacted, and the stage applies the
// selection alone. The informer syncs in the background: /readyz never
// waits for the API server; a new container process's events wait for
// its pod at most --k8s-identity-wait.
func newIdentity(ctx context.Context, f agentFlags, log *slog.Logger) (*kube.Identity, error) {
	opts := kube.Options{Selection: f.selection, Wait: f.k8sWait, ProcFS: f.procFS, Logger: log}
	cfg, onK8s, err := kube.ClientConfig(f.kubeconfig)
	if err != nil {
		return nil, err
	}
	if !onK8s {
		log.Info("not on Kubernetes (no --kubeconfig, KUBECONFIG or in-cluster service account): no pod identity")
		return kube.New(opts), nil
	}
	pods, err := kube.NewPods(cfg, f.nodeName, log)
	if err != nil {
		return nil, err
	}
	go pods.Run(ctx)
	log.Info("watching this node's pods", "node", f.nodeName, "api_server", cfg.Host, "identity_wait", f.k8sWait)
	opts.Pods = pods
	return kube.New(opts), nil
}
