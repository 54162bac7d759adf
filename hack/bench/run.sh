#!/usr/bin/env bash
# run.sh: benchmark peapod side by side with `podman kube play` and the floor
# (the least kernel work a pod needs), and print one table of ratios.
# Run as root. Arguments go to the bench program:
#
#   hack/bench/run.sh                    full run (about 15 minutes)
#   hack/bench/run.sh --quick            CI: few iterations, no podman, under 2 minutes
#   hack/bench/run.sh --only podman,floor
#
# It installs busybox-static (and podman, unless --quick or --only leaves
# podman out) from Debian, builds a busybox rootfs in a temp dir, builds
# peapod and the bench program, and leaves nothing behind but the JSON file.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=$PATH:/usr/local/go/bin
if (($(id -u) != 0)); then
	echo "run.sh: run as root: every system under test creates namespaces, mounts and cgroups" >&2
	exit 1
fi

want_podman=1
for a in "$@"; do
	case $a in
	--quick) want_podman=0 ;;
	--only=*) [[ $a == *podman* ]] && want_podman=1 || want_podman=0 ;;
	esac
done
if [[ " $* " == *" --only "* ]]; then
	only=$(sed -n 's/.*--only \([^ ]*\).*/\1/p' <<<" $* ")
	[[ $only == *podman* ]] && want_podman=1 || want_podman=0
fi
need=()
[[ -x /bin/busybox ]] || need+=(busybox-static)
((want_podman)) && ! command -v podman >/dev/null && need+=(podman)
if ((${#need[@]})); then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

tmp=$(mktemp -d /tmp/peapod-bench-tools.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
hack/mkrootfs.sh "$tmp/rootfs" >/dev/null
CGO_ENABLED=0 go build -o "$tmp/bench" ./hack/bench
"$tmp/bench" --rootfs "$tmp/rootfs" --repo "$PWD" "$@"
