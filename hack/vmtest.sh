#!/usr/bin/env bash
# vmtest.sh: run Go test binaries as root inside a qemu VM that boots Debian
# 12's stock 6.1 kernel with pure cgroup v2, so the root tests see the oldest
# kernel peapod supports whatever the host runs. No KVM needed (TCG), no
# network in the guest; the kernel modules, the tests and a busybox rootfs
# travel in the initramfs.
#
#   hack/vmtest.sh [options] [PACKAGE...] [-- TEST-BINARY-FLAGS...]
#
#   hack/vmtest.sh                                   the default packages below
#   hack/vmtest.sh ./runtime/cgroups -- -test.run 'TestV2'
#   hack/vmtest.sh --env GUESTCHECK_BREAK=v1 ./hack/vmtest/guestcheck   must fail
#
# Options:
#   --env K=V          export K=V to the tests in the guest (repeatable)
#   --timeout SECS     kill the VM after SECS seconds (default 600)
#   --test-timeout D   -test.timeout of each test binary (default 5m)
#   --mem MIB          guest memory (default 1024)
#   --log FILE         also write the guest console to FILE
#   --tmp FS           the guest's /tmp: ext4 (default), a disk as on a Debian 12
#                      host, or tmpfs, which has no idmapped mounts before
#                      Linux 6.3: pods with a user namespace cannot start
#                      from it, so only tests that skip such pods pass
#
# Exit status: 0 if every test binary built and passed, 1 if any failed,
# 2 if the harness itself failed (usage, download, boot, timeout).
#
# The kernel package and its unpacked modules are cached in $PEAPOD_VMTEST_CACHE
# (default ${XDG_CACHE_HOME:-/var/cache}/peapod-vmtest), keyed by package version.
# PEAPOD_VMTEST_ACCEL=kvm uses KVM where it works (default tcg).
# Run as root on Debian 12: it installs qemu-system-x86, busybox-static,
# e2fsprogs and lz4 with apt-get when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin

DEFAULT_PACKAGES=(./hack/vmtest/guestcheck ./runtime/... ./netsetup/... ./cmd/peapod/)

# Modules loaded explicitly at boot, in this order (their dependencies are
# resolved from modules.dep and loaded first). crc32c_generic comes first: it
# is only a softdep of libcrc32c (nf_tables, nf_conntrack, ext4), which depmod
# does not record.
BOOT_MODULES=(crc32c_generic overlay veth bridge nf_tables nf_conntrack nf_nat
	nft_chain_nat nft_nat nft_masq nft_ct loop ext4 virtio_pci virtio_blk)
# Modules shipped in the initramfs but left to the kernel's autoload (through
# /sbin/modprobe -> busybox), as a Debian host would load them on first use.
AUTOLOAD_MODULES=(xfrm_user nf_conntrack_netlink dummy tun macvlan br_netfilter
	nft_compat nft_fib_inet nft_reject_inet nft_redir nft_limit nft_log)

cache=${PEAPOD_VMTEST_CACHE:-${XDG_CACHE_HOME:-/var/cache}/peapod-vmtest}
# TCG by default: nested KVM on the project's machines hangs the guest kernel.
accel=${PEAPOD_VMTEST_ACCEL:-tcg}
vm_timeout=600
test_timeout=5m
mem=1024
log_file=
tmp_fs=ext4
guest_env=()
packages=()
test_args=()

say() { printf "vmtest: [%3ds] %s\n" "$SECONDS" "$*" >&2; }
die() {
	say "$*"
	exit 2
}

# usage prints the header comment; exit status $1.
usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
	exit "$1"
}

parse_args() {
	while (($#)); do
		case $1 in
		--env) [[ ${2:-} == *=* ]] || die "--env wants K=V"; guest_env+=("$2"); shift ;;
		--timeout) vm_timeout=${2:?--timeout wants seconds}; shift ;;
		--test-timeout) test_timeout=${2:?--test-timeout wants a duration}; shift ;;
		--mem) mem=${2:?--mem wants MiB}; shift ;;
		--log) log_file=${2:?--log wants a file}; shift ;;
		--tmp) tmp_fs=${2:-}; [[ $tmp_fs == @(tmpfs|ext4) ]] || die "--tmp wants tmpfs or ext4"; shift ;;
		-h | --help) usage 0 ;;
		--) shift; test_args=("$@"); break ;;
		-*) say "unknown option $1"; usage 2 >&2 ;;
		*) packages+=("$1") ;;
		esac
		shift
	done
	((${#packages[@]})) || packages=("${DEFAULT_PACKAGES[@]}")
}

apt_updated=
apt_update() {
	[[ -n $apt_updated ]] || apt-get update -qq
	apt_updated=1
}

# ensure_host_tools installs what is missing, and only that.
ensure_host_tools() {
	local need=()
	command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
	[[ -x /bin/busybox ]] || need+=(busybox-static)
	command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
	command -v lz4 >/dev/null || need+=(lz4)
	command -v go >/dev/null || die "no go in PATH"
	((${#need[@]})) || return 0
	say "installing ${need[*]}"
	apt_update
	local out
	out=$(DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" 2>&1) ||
		die "apt-get install ${need[*]} failed: $out"
}

# kernel_id prints PKG_VERSION of the kernel package that linux-image-amd64
# depends on in the local apt lists: linux-image-6.1.0-NN-amd64 on Debian 12.
# The ABI number NN changes with every security update, and the mirror keeps
# only the newest. (One apt-cache call: without a pkgcache.bin, as in Debian's
# container images, each call re-reads every list.)
kernel_id() {
	local id
	id=$(apt-cache show --no-all-versions linux-image-amd64 2>/dev/null |
		sed -n 's/^Depends: \(linux-image-[^ ,]*\) (= \([^)]*\)).*/\1_\2/p')
	[[ $id == linux-image-6.1.*-amd64_* ]] ||
		die "linux-image-amd64 depends on '${id%_*}', not linux-image-6.1.*-amd64: this harness needs Debian 12 (bookworm) apt sources"
	echo "$id"
}

# fetch_kernel PKG VERSION: the .deb in $cache/deb, downloaded once.
fetch_kernel() {
	local pkg=$1 ver=$2 deb
	deb=$cache/deb/${pkg}_${ver//:/%3a}_amd64.deb
	if [[ ! -f $deb ]]; then
		say "downloading $pkg $ver"
		mkdir -p "$cache/deb"
		(cd "$cache/deb" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$ver" >/dev/null) ||
			die "apt-get download $pkg=$ver failed"
		# Keep only the current kernel.
		find "$cache/deb" -name '*.deb' ! -path "$deb" -delete
	fi
	echo "$deb"
}

# prepare_kernel PKG VERSION DIR: unpack vmlinuz and the modules we need into
# DIR, with their own modules.dep and the boot load order in DIR/modules.order.
prepare_kernel() {
	local pkg=$1 ver=$2 dir=$3 deb tmp kver
	deb=$(fetch_kernel "$pkg" "$ver")
	say "unpacking $pkg $ver into $dir"
	tmp=$(mktemp -d "$cache/unpack.XXXXXX")
	cleanup+=("$tmp" "$dir.new")
	rm -rf "$dir.new"
	dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" --wildcards './boot/vmlinuz-*' './lib/modules/*'
	kver=$(basename "$tmp"/lib/modules/*)
	# The package ships no modules.dep (its postinst runs depmod).
	busybox depmod -b "$tmp" "$kver"
	mkdir -p "$dir.new/lib/modules/$kver"
	cp "$tmp/boot/vmlinuz-$kver" "$dir.new/vmlinuz"
	module_closure "$tmp/lib/modules/$kver" "$dir.new/lib/modules/$kver" "$dir.new/modules.order"
	busybox depmod -b "$dir.new" "$kver"
	echo "$kver" >"$dir.new/kver"
	rm -rf "$dir"
	mv "$dir.new" "$dir"
}

# module_closure SRC DST ORDER: copy BOOT_MODULES and AUTOLOAD_MODULES with
# their dependencies from SRC to DST; write the load order of BOOT_MODULES
# (paths relative to the modules dir, dependencies first) to ORDER.
module_closure() {
	local src=$1 dst=$2 order=$3 m
	local -A deps=() seen=() byname=()
	local line mod rest f
	while IFS= read -r line; do
		mod=${line%%:*}
		rest=${line#*:}
		mod=${mod#"$src"/}
		deps[$mod]=$(for f in $rest; do echo "${f#"$src"/}"; done)
		f=${mod##*/}
		f=${f%.ko}
		byname[${f//-/_}]=$mod
	done <"$src/modules.dep"
	visit() {
		local m=$1 d
		[[ -n ${seen[$m]:-} ]] && return
		seen[$m]=1
		for d in ${deps[$m]}; do visit "$d"; done
		echo "$m"
	}
	: >"$order"
	for m in "${BOOT_MODULES[@]}" "${AUTOLOAD_MODULES[@]}"; do
		[[ -n ${byname[$m]:-} ]] || die "kernel module $m not found in $src"
	done
	for m in "${BOOT_MODULES[@]}"; do visit "${byname[$m]}"; done >"$order"
	for m in "${AUTOLOAD_MODULES[@]}"; do visit "${byname[$m]}"; done >/dev/null
	for m in "${!seen[@]}"; do
		mkdir -p "$dst/$(dirname "$m")"
		cp "$src/$m" "$dst/$m"
	done
}

# ensure_kernel sets kdir to the cached kernel, preparing it on first use.
# A warm cache needs no network: the local apt lists name the version.
ensure_kernel() {
	local want
	want=$(printf '%s\n' "${BOOT_MODULES[@]}" -- "${AUTOLOAD_MODULES[@]}")
	kdir=$cache/kernel/$(kernel_id 2>/dev/null || true) # fails until apt-get update ran once
	if [[ ! -f $kdir/modules.wanted || $(<"$kdir/modules.wanted") != "$want" ]]; then
		# About to download: refresh the lists first, since the mirror keeps
		# only the newest kernel and drops the one older lists name.
		apt_update
		kdir=$cache/kernel/$(kernel_id)
	fi
	if [[ ! -f $kdir/modules.wanted || $(<"$kdir/modules.wanted") != "$want" ]]; then
		local id=${kdir##*/} # PKG_VERSION
		prepare_kernel "${id%%_*}" "${id#*_}" "$kdir"
		echo "$want" >"$kdir/modules.wanted"
		find "$cache/kernel" -mindepth 1 -maxdepth 1 ! -path "$kdir" -exec rm -rf {} +
	fi
	say "kernel $(<"$kdir/kver") from $kdir"
}

# build_tests compiles one test binary per package that has tests into
# $stage/tests and lists them in $stage/etc/vmtest/tests as "BINARY DIR", DIR
# relative to the repository. Packages that fail to build are added to
# build_failures; the rest still run.
build_tests() {
	local root dir imp ntest nxtest ninvalid i n base bin
	local -a imps=() rels=() batch=()
	local -A used=()
	root=$(pwd)
	while IFS='|' read -r dir imp ntest nxtest ninvalid; do
		# Invalid files count as tests: `go test -c` then reports the error.
		if ((ntest + nxtest + ninvalid == 0)); then
			say "skip $imp: no test files"
			continue
		fi
		imps+=("$imp")
		rels+=("${dir#"$root"/}")
	done < <(go list -e -f '{{.Dir}}|{{.ImportPath}}|{{len .TestGoFiles}}|{{len .XTestGoFiles}}|{{len .InvalidGoFiles}}' "${packages[@]}")
	((${#imps[@]})) || die "no tests in ${packages[*]}"

	# One `go test -c -o DIR/` builds many packages in parallel and names each
	# binary after the package's last path element; packages whose names
	# collide go into separate batches.
	for i in "${!imps[@]}"; do
		base=${imps[i]##*/}
		n=${used[$base]:-0}
		used[$base]=$((n + 1))
		batch[i]=$n
	done
	for ((n = 0; ; n++)); do
		local -a these=()
		for i in "${!imps[@]}"; do
			((batch[i] != n)) || these+=("${imps[i]}")
		done
		((${#these[@]})) || break
		say "go test -c ${these[*]#"$(go list -m)/"}"
		mkdir -p "$stage/tests/$n"
		CGO_ENABLED=0 go test -c -ldflags='-s -w' -o "$stage/tests/$n/" "${these[@]}" || true
	done

	: >"$stage/etc/vmtest/tests"
	for i in "${!imps[@]}"; do
		bin=${batch[i]}/${imps[i]##*/}.test
		if [[ ! -x $stage/tests/$bin ]]; then
			build_failures+=("${imps[i]}")
			continue
		fi
		echo "$bin ${rels[i]}" >>"$stage/etc/vmtest/tests"
		mkdir -p "$stage/src/${rels[i]}"
		[[ ! -d $root/${rels[i]}/testdata ]] || cp -a "$root/${rels[i]}/testdata" "$stage/src/${rels[i]}/"
	done
	((${#build_failures[@]} == 0)) || say "FAIL: test binaries that did not build: ${build_failures[*]}"
}

# build_peapod puts a static peapod at /peapod in the guest ($PEAPOD_BIN), if
# it builds: the tests that need it skip without it.
build_peapod() {
	say "go build ./cmd/peapod"
	if ! CGO_ENABLED=0 go build -ldflags='-s -w' -o "$stage/peapod" ./cmd/peapod; then
		say "peapod does not build: the guest has no /peapod and PEAPOD_BIN is unset"
		rm -f "$stage/peapod"
	fi
}

# install_with_libs copies a dynamically linked program into $stage at the
# same path, with every library ldd names for it.
install_with_libs() {
	local bin=$1 lib
	mkdir -p "$stage$(dirname "$bin")"
	cp "$bin" "$stage$bin"
	for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
		mkdir -p "$stage$(dirname "$lib")"
		cp -L "$lib" "$stage$lib"
	done
}

# build_initramfs assembles $stage and packs it into $work/initrd.lz4.
build_initramfs() {
	local kver
	kver=$(<"$kdir/kver")
	mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,etc/vmtest,lib/modules,src/hack,root,proc,sys,dev,run,tmp}
	install -m 0755 hack/vmtest/init "$stage/init"
	cp /bin/busybox "$stage/bin/busybox"
	# util-linux nsenter, which peapod exec needs (busybox's lacks
	# --cgroup=FILE), with the shared libraries it loads, where it looks
	# for them. busybox --install leaves the file in place.
	install_with_libs /usr/bin/nsenter
	# A host has an /etc/hosts, which hostNetwork pods get a copy of.
	printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$stage/etc/hosts"
	cp -a "$kdir/lib/modules/$kver" "$stage/lib/modules/"
	cp "$kdir/modules.order" "$stage/etc/vmtest/modules"
	# Tests may find the repository root by go.mod and call hack/mkrootfs.sh.
	cp go.mod "$stage/src/"
	cp hack/mkrootfs.sh "$stage/src/hack/"
	# One per line; printf would turn an empty list into one empty line.
	: >"$stage/etc/vmtest/env"
	: >"$stage/etc/vmtest/args"
	((${#guest_env[@]} == 0)) || printf '%s\n' "${guest_env[@]}" >"$stage/etc/vmtest/env"
	((${#test_args[@]} == 0)) || printf '%s\n' "${test_args[@]}" >"$stage/etc/vmtest/args"
	echo "$test_timeout" >"$stage/etc/vmtest/test-timeout"
	echo "$tmp_fs" >"$stage/etc/vmtest/tmp-fs"

	# The pod rootfs, as an ext4 image: the guest mounts it at /rootfs-ext4
	# and copies it to a tmpfs at /rootfs-tmpfs.
	hack/mkrootfs.sh "$work/rootfs" >/dev/null
	mkfs.ext4 -q -F -d "$work/rootfs" "$stage/rootfs.ext4" 32M >/dev/null

	# lz4 (legacy format, as the kernel wants): under TCG the kernel reached
	# /init 6.7 s after boot with a 53 MB lz4 archive, 12.4 s with zstd
	# (37 MB) and 25 s with gzip (38 MB). Uncompressed is slower still: the
	# fw_cfg transfer costs more than decompressing.
	(cd "$stage" && find . -mindepth 1 | busybox cpio -o -H newc -R 0:0 2>/dev/null) | lz4 -q -l >"$work/initrd.lz4"
	say "initramfs $(du -h "$work/initrd.lz4" | cut -f1)"
}

# boot runs the VM and sets guest_failures from its exit status.
boot() {
	local rc disk=()
	if [[ $tmp_fs == ext4 ]]; then
		# Sparse: it costs the host only what the tests write.
		truncate -s 8G "$work/tmp.img"
		mkfs.ext4 -q -F "$work/tmp.img"
		disk=(-drive "file=$work/tmp.img,if=virtio,format=raw,cache=unsafe")
	fi
	say "booting (timeout ${vm_timeout}s)"
	set +e
	timeout -k 10 "$vm_timeout" qemu-system-x86_64 -accel "$accel" -m "$mem" -smp 2 \
		-nographic -no-reboot -nic none "${disk[@]}" \
		-device isa-debug-exit,iobase=0xf4,iosize=0x04 \
		-kernel "$kdir/vmlinuz" -initrd "$work/initrd.lz4" \
		-append "console=ttyS0 quiet panic=-1" </dev/null 2>&1 |
		# Strip SeaBIOS's terminal escapes and the serial line's CRs.
		sed -u -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1bc//g' -e 's/\r$//' |
		tee ${log_file:+"$log_file"}
	rc=${PIPESTATUS[0]}
	set -e
	echo # the console's last line may lack its newline
	case $rc in
	124 | 137) die "the VM did not finish within ${vm_timeout}s (hung test or guest?); raise --timeout or -test.timeout" ;;
	0) die "the guest powered off without reporting a verdict (its /init crashed: see the console output above)" ;;
	*) ((rc % 2 == 1)) || die "qemu failed (exit $rc)" ;;
	esac
	guest_failures=$(((rc - 1) / 2))
	((guest_failures != 127)) || die "the guest could not set itself up (see FATAL above)"
}

main() {
	parse_args "$@"
	(($(id -u) == 0)) || die "run as root: it installs packages and builds root-owned images"
	ensure_host_tools
	mkdir -p "$cache"
	cleanup=()
	trap 'rm -rf "${cleanup[@]}"' EXIT
	ensure_kernel
	work=$(mktemp -d "${TMPDIR:-/tmp}/peapod-vmtest.XXXXXX")
	cleanup+=("$work")
	stage=$work/initramfs
	mkdir -p "$stage/etc/vmtest"
	build_failures=()
	build_tests
	build_peapod
	build_initramfs
	local t0=$SECONDS
	boot
	say "VM ran for $((SECONDS - t0))s"
	if ((${#build_failures[@]})); then
		say "FAIL: test binaries that did not build: ${build_failures[*]}"
	fi
	if ((guest_failures)); then
		say "FAIL: $guest_failures of $(wc -l <"$stage/etc/vmtest/tests") test binaries failed in the guest"
	fi
	if ((${#build_failures[@]} + guest_failures)); then
		exit 1
	fi
	say "PASS"
}

main "$@"
