#!/usr/bin/env bash
# test.sh: every test tier, as CI runs them. Run as root on a Debian machine
# for the full suite; as another user, the root and end-to-end tiers skip.
#
#   hack/test.sh            all tiers
#   hack/test.sh unit       unit tests only (no root needed)
#   hack/test.sh --load     all tiers with two CPU-burning processes beside
#                           them, to prove the tests hold on a busy machine
#                           (also with a tier: hack/test.sh --load unit)
#
# It installs what the tests need when run as root (busybox-static for the
# test rootfs, iproute2 and nftables for the network checks).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
tier=all
load=0
for a in "$@"; do
	case $a in
	--load) load=1 ;;
	*) tier=$a ;;
	esac
done

# burn starts two busy loops, each keeping a core busy for as long as the
# tests run; the trap stops them however the script ends.
burn() {
	local pids=()
	for _ in 1 2; do
		sh -c 'while :; do :; done' &
		pids+=($!)
	done
	trap 'kill '"${pids[*]}"' 2>/dev/null' EXIT
	echo "== load: two CPU-burning processes (${pids[*]}) run beside the tests"
}

deps() {
	local need=()
	command -v busybox >/dev/null || [[ -x /bin/busybox ]] || need+=(busybox-static)
	command -v nft >/dev/null || need+=(nftables)
	command -v ip >/dev/null || need+=(iproute2)
	command -v promtool >/dev/null || need+=(prometheus)
	command -v systemd-analyze >/dev/null || need+=(systemd)
	command -v docker-registry >/dev/null || need+=(docker-registry)
	command -v skopeo >/dev/null || need+=(skopeo)
	((${#need[@]})) || return 0
	if (($(id -u) != 0)); then
		echo "test.sh: missing ${need[*]}; install them or run as root" >&2
		return 0
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

static_checks() {
	echo "== gofmt, go vet"
	local bad
	bad=$(gofmt -l $(git ls-files '*.go'))
	[[ -z $bad ]] || { echo "gofmt needed on: $bad" >&2; exit 1; }
	go vet ./...
}

unit() {
	echo "== unit tests (no root: root tests skip)"
	PEAPOD_SKIP_ROOT=1 go test -race -count=1 ./...
}

root_and_e2e() {
	if (($(id -u) != 0)); then
		echo "== root and end-to-end tests skipped: not root"
		return 0
	fi
	echo "== root integration and end-to-end tests"
	# Static test binaries, as peapod itself is built: a test binary is
	# also the exec stage, executed inside a container's root, which has
	# no dynamic loader.
	export CGO_ENABLED=0
	local sysdiff=../shared/tools/sysdiff
	if [[ -x $sysdiff ]]; then
		# sysdiff exits 3 when the tests passed but left something behind.
		"$sysdiff" run -- go test -count=1 -timeout 10m ./...
	else
		go test -count=1 -timeout 10m ./...
	fi
}

deps
((load)) && burn
static_checks
unit
[[ $tier == unit ]] || root_and_e2e
