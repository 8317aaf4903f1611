// SPDX-License-Identifier: Apache-2.0
/*
 * Which headers did the build use? <vmlinux.h> comes from include/gadget/<arch>/ of some tree and
 * <gadget/tree.h> from that tree's include/: each defines a mark, and both marks land in .rodata
 * (arch mark first, tree mark second), where the tests read them back.
 */
#include <vmlinux.h>
#include <gadget/tree.h>

#define SEC(name) __attribute__((section(name), used))

const volatile __u32 arch_mark = VMLINUX_ARCH_MARK;
const volatile __u32 tree_mark = TREE_MARK;

SEC("tracepoint/syscalls/sys_enter_openat")
int probe(void *ctx)
{
	return arch_mark == tree_mark;
}

char LICENSE[] SEC("license") = "GPL";
