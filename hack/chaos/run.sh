#!/usr/bin/env bash
# run.sh: the disruptive tests of peapod (churn with kill -9 of the agent,
# hostile manifests, a create/delete soak, shim kills and full or read-only
# root and state dirs), each ending with a leak check. Run as root:
#
#   hack/chaos/run.sh                    short mode, what CI runs (under 4 minutes)
#   hack/chaos/run.sh --long             long mode (about 20 minutes)
#   hack/chaos/run.sh --seed 1234        the same random choices as a run that printed seed 1234
#   hack/chaos/run.sh --modes churn,soak -v
#
# Every agent runs on its own temp dirs, bridge, 10.x pod CIDR and cgroup
# parent; Ctrl-C cleans up. Agent logs are kept (path printed) when a mode
# fails. Other arguments go to the chaos program (see `-help`).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=$PATH:/usr/local/go/bin
if (($(id -u) != 0)); then
	echo "run.sh: run as root: the agent creates namespaces, mounts, cgroups and links" >&2
	exit 1
fi
args=()
while (($#)); do
	case $1 in
	--short) ;;
	--long) args+=(-long) ;;
	--seed) args+=(-seed "$2"); shift ;;
	--seed=*) args+=(-seed "${1#--seed=}") ;;
	*) args+=("$1") ;;
	esac
	shift
done
if ! [[ -x /bin/busybox ]] && ! command -v busybox >/dev/null; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static >/dev/null
fi

tmp=$(mktemp -d /tmp/peapod-chaos-tools.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
hack/mkrootfs.sh "$tmp/rootfs" >/dev/null
CGO_ENABLED=0 go build -o "$tmp/peapod" ./cmd/peapod
CGO_ENABLED=0 go build -o "$tmp/chaos" ./hack/chaos
# Not exec: the trap removes the tools once the program is done. The
# program handles SIGINT itself (it stops its agents in order).
"$tmp/chaos" -peapod "$tmp/peapod" -rootfs "$tmp/rootfs" "${args[@]}"
