#!/usr/bin/env bash
# Starts etcd and kube-apiserver on 127.0.0.1 for the Kubernetes tests: no
# kubelet, no controller-manager, no scheduler; token authentication and
# RBAC as on a real cluster. The binaries come from test/kube/build.sh
# (built once, then cached). Prints KUBECONFIG=<admin kubeconfig> as its
# last line; <dir>/agent.kubeconfig authenticates as the DaemonSet's
# ServiceAccount (system:serviceaccount:pausewatch:pausewatch), whose rights
# are whatever RBAC objects the caller creates (deploy/daemonset.yaml's).
# test/kube/down.sh stops both.
#
#   PAUSEWATCH_KUBE_DIR       state, logs and kubeconfigs (/tmp/pausewatch-kube)
#   PAUSEWATCH_KUBE_API_PORT  the API server's port (19850); etcd takes the next two
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
DIR=${PAUSEWATCH_KUBE_DIR:-/tmp/pausewatch-kube}
API_PORT=${PAUSEWATCH_KUBE_API_PORT:-19850}
ETCD_PORT=$((API_PORT + 1))
ETCD_PEER_PORT=$((API_PORT + 2))

bin=$("$here/build.sh" | tail -n1)
PAUSEWATCH_KUBE_DIR=$DIR "$here/down.sh" >/dev/null 2>&1 || true
rm -rf "$DIR"
mkdir -p "$DIR/etcd" "$DIR/certs"
chmod 700 "$DIR/etcd"
chmod 700 "$DIR"

openssl genrsa -out "$DIR/sa.key" 2048 2>/dev/null
openssl rsa -in "$DIR/sa.key" -pubout -out "$DIR/sa.pub" 2>/dev/null
admin_token=$(openssl rand -hex 24)
agent_token=$(openssl rand -hex 24)
cat >"$DIR/tokens.csv" <<CSV
$admin_token,admin,admin,"system:masters"
$agent_token,system:serviceaccount:pausewatch:pausewatch,pausewatch-agent,"system:serviceaccounts,system:serviceaccounts:pausewatch"
CSV

setsid "$bin/etcd" --name default --data-dir "$DIR/etcd" \
	--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
	--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
	--initial-cluster "default=http://127.0.0.1:$ETCD_PEER_PORT" --log-level warn \
	</dev/null >"$DIR/etcd.log" 2>&1 &
echo $! >"$DIR/etcd.pid"

# The API server writes a self-signed serving certificate to --cert-dir.
# No endpoint reconciler: it refuses a loopback advertise address, and no
# client here reaches the API server through the kubernetes Service.
setsid "$bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
	--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
	--cert-dir "$DIR/certs" --token-auth-file "$DIR/tokens.csv" --authorization-mode RBAC \
	--service-account-issuer https://kubernetes.default.svc.cluster.local \
	--service-account-key-file "$DIR/sa.pub" --service-account-signing-key-file "$DIR/sa.key" \
	--service-cluster-ip-range 10.96.0.0/24 --profiling=false \
	--endpoint-reconciler-type none \
	</dev/null >"$DIR/kube-apiserver.log" 2>&1 &
echo $! >"$DIR/kube-apiserver.pid"

for _ in $(seq 1 240); do
	if curl -ksf -H "Authorization: Bearer $admin_token" "https://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1; then
		break
	fi
	if ! kill -0 "$(cat "$DIR/kube-apiserver.pid")" 2>/dev/null || ! kill -0 "$(cat "$DIR/etcd.pid")" 2>/dev/null; then
		echo "kube-apiserver or etcd exited; logs in $DIR:" >&2
		tail -n 20 "$DIR/etcd.log" "$DIR/kube-apiserver.log" >&2
		exit 1
	fi
	sleep 0.25
done
curl -ksf -H "Authorization: Bearer $admin_token" "https://127.0.0.1:$API_PORT/readyz" >/dev/null || {
	echo "kube-apiserver not ready after 60 s; log: $DIR/kube-apiserver.log" >&2
	exit 1
}

# The serving certificate is self-signed for 127.0.0.1 and generated at
# start; a loopback test server's identity is not what is under test.
kubeconfig() {
	cat <<YAML
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {server: "https://127.0.0.1:$API_PORT", insecure-skip-tls-verify: true}
users:
- name: $1
  user: {token: "$2"}
contexts:
- name: local
  context: {cluster: local, user: $1}
current-context: local
YAML
}
kubeconfig admin "$admin_token" >"$DIR/admin.kubeconfig"
kubeconfig pausewatch "$agent_token" >"$DIR/agent.kubeconfig"
chmod 600 "$DIR"/*.kubeconfig
echo "AGENT_KUBECONFIG=$DIR/agent.kubeconfig"
echo "KUBECONFIG=$DIR/admin.kubeconfig"
