// Package guestcheck is hack/vmtest.sh's self-check: tests that assert the
// guest is the machine the harness promises (pure cgroup v2 with the memory,
// cpu and pids controllers delegated from the root, the test rootfs on ext4
// and tmpfs, testdata next to the binary). They run only in the VM
// (PEAPOD_VMTEST=1) and skip everywhere else.
//
// GUESTCHECK_BREAK=v1 makes TestMemoryLimit write the cgroup v1 file name
// memory.limit_in_bytes, so `hack/vmtest.sh --env GUESTCHECK_BREAK=v1
// ./hack/vmtest/guestcheck` must fail: proof that a failing test fails the
// harness.
package guestcheck
