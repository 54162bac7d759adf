#!/bin/sh
# mkrootfs.sh DIR: build a minimal root filesystem from Debian's busybox-static
# into DIR (every applet as a symlink, /etc/passwd and /etc/group with root and
# nobody). Pods name it as `image: rootfs:DIR`. Idempotent.
set -eu
dir=${1:?usage: mkrootfs.sh DIR}
bb=/bin/busybox
if ! "$bb" --list >/dev/null 2>&1; then
	echo "mkrootfs: no $bb: apt-get install -y busybox-static" >&2
	exit 1
fi
mkdir -p "$dir"
cd "$dir"
mkdir -p bin sbin usr/bin usr/sbin etc tmp root proc sys dev var/tmp home
chmod 1777 tmp var/tmp
chmod 0700 root
cp "$bb" bin/busybox
for applet in $(bin/busybox --list); do
	[ -e "bin/$applet" ] || ln -s busybox "bin/$applet"
done
cat >etc/passwd <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >etc/group <<'GROUP'
root:x:0:
nobody:x:65534:
GROUP
: >etc/hosts
: >etc/hostname
: >etc/resolv.conf
echo "mkrootfs: busybox rootfs ready in $dir"
