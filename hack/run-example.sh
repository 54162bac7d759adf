#!/usr/bin/env bash
# run-example.sh: build peapod and run the agent on the example pods.
# Run as root on Debian. Extra arguments go to `peapod agent`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
if (($(id -u) != 0)); then
	echo "run-example.sh: run as root: the agent creates namespaces, mounts and cgroups" >&2
	exit 1
fi
if ! [[ -x /bin/busybox ]]; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static
fi
hack/mkrootfs.sh /var/lib/peapod/rootfs/busybox
install -d -m 0755 /etc/peapod/manifests
install -m 0644 manifests/examples/*.yaml /etc/peapod/manifests/
CGO_ENABLED=0 go build -o bin/peapod ./cmd/peapod
echo "run-example.sh: agent starting; in another shell: bin/peapod ps"
exec bin/peapod agent --manifests /etc/peapod/manifests "$@"
