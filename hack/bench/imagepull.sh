#!/usr/bin/env bash
# imagepull.sh: pull + unpack of a generated 5-layer image from a loopback
# docker-registry: `peapod image pull` against `skopeo copy` to an OCI
# directory and, when installed, `podman pull`. Run as root. Arguments go
# to the program (--runs N, --layer-mb MB).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=$PATH:/usr/local/go/bin
if (($(id -u) != 0)); then
	echo "imagepull.sh: run as root: peapod's store unpacks layers with their owners" >&2
	exit 1
fi
need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
if ((${#need[@]})); then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
tmp=$(mktemp -d /tmp/peapod-imagepull-tools.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 go build -o "$tmp/peapod" ./cmd/peapod
CGO_ENABLED=0 go build -o "$tmp/imagepull" ./hack/bench/imagepull
"$tmp/imagepull" --peapod "$tmp/peapod" "$@"
