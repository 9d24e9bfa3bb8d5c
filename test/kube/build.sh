#!/usr/bin/env bash
# Builds kube-apiserver and etcd from their published Go modules into a cache
# folder keyed by version, so that the second run (and every later CI run on
# the same machine) only checks that the binaries are there. Each is built in
# its own throwaway module under the cache, never in the project's go.mod: the
# API server's dependency graph is large and must not leak into the agent's.
#
# Prints the folder holding both binaries as its last line.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
STAGING_VERSION=${STAGING_VERSION:-v0.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
CACHE=${PAUSEWATCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pausewatch}
OUT="$CACHE/kube/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
export PATH="/usr/local/go/bin:$PATH"
# The binaries are for loopback tests: no cgo, so they do not depend on the
# machine's libc, and -trimpath so that the cache key is the only input.
export CGO_ENABLED=0 GOFLAGS=-mod=mod

mkdir -p "$OUT"

if [ ! -x "$OUT/kube-apiserver" ]; then
	src="$CACHE/kube/src-apiserver-$K8S_VERSION"
	rm -rf "$src" && mkdir -p "$src"
	cd "$src"
	go mod download -json "k8s.io/kubernetes@$K8S_VERSION" >/dev/null
	kmod=$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$K8S_VERSION.mod
	{
		echo "module pausewatch.test/kube-apiserver-build"
		echo
		grep -m1 '^go ' "$kmod"
		echo
		echo "require k8s.io/kubernetes $K8S_VERSION"
		echo
		echo "replace ("
		# Every staging module k8s.io/kubernetes replaces with a local folder
		# is published under the matching v0.x tag.
		sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$STAGING_VERSION"'#p' "$kmod"
		echo ")"
	} >go.mod
	cat >tools.go <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
	echo "--- resolving kube-apiserver $K8S_VERSION modules" >&2
	go mod tidy >&2
	echo "--- building kube-apiserver $K8S_VERSION (minutes on 2 cores)" >&2
	v=$K8S_VERSION
	go build -trimpath -o "$OUT/kube-apiserver.tmp" \
		-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$v -X k8s.io/component-base/version.gitMajor=${v%%.*} -X k8s.io/client-go/pkg/version.gitVersion=$v" \
		k8s.io/kubernetes/cmd/kube-apiserver >&2
	mv "$OUT/kube-apiserver.tmp" "$OUT/kube-apiserver"
	cd / && rm -rf "$src"
fi

if [ ! -x "$OUT/etcd" ]; then
	src="$CACHE/kube/src-etcd-$ETCD_VERSION"
	rm -rf "$src" && mkdir -p "$src"
	cd "$src"
	cat >go.mod <<GOMOD
module pausewatch.test/etcd-build

go 1.26.0

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
GOMOD
	# etcd's own main (go.etcd.io/etcd/v3) is this, and nothing else.
	cat >main.go <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
	echo "--- building etcd $ETCD_VERSION" >&2
	go mod tidy >&2
	go build -trimpath -ldflags "-s -w" -o "$OUT/etcd.tmp" . >&2
	mv "$OUT/etcd.tmp" "$OUT/etcd"
	cd / && rm -rf "$src"
fi

echo "$OUT"
