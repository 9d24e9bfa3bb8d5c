#!/usr/bin/env bash
# Stops what test/kube/up.sh started (the API server first, then etcd) and
# removes its state. Only the processes whose pids up.sh recorded are
# signalled.
set -uo pipefail
DIR=${PAUSEWATCH_KUBE_DIR:-/tmp/pausewatch-kube}
for name in kube-apiserver etcd; do
	f="$DIR/$name.pid"
	[ -f "$f" ] || continue
	pid=$(cat "$f")
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"
		for _ in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
	fi
	rm -f "$f"
done
[ -n "${PAUSEWATCH_KUBE_KEEP:-}" ] || rm -rf "$DIR"
