// SPDX-License-Identifier: Apache-2.0
/*
 * The tracing macros ig's gadgets use that libbpf added in 1.2: BPF_UPROBE, BPF_URETPROBE, a
 * BPF_KPROBE with six arguments and PT_REGS_PARM6_CORE_SYSCALL. With libbpf 1.1 headers alone this
 * does not compile; with gadgetstore's compatibility header it must, for both architectures.
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

__u64 last_size;
__u64 last_ret;
__u64 sixth_arg;
__u64 sixth_syscall_arg;

SEC("uprobe/libc:malloc")
int BPF_UPROBE(enter_malloc, size_t size)
{
	last_size = size;
	return 0;
}

SEC("uretprobe/libc:malloc")
int BPF_URETPROBE(exit_malloc, void *ret)
{
	last_ret = (__u64)ret;
	return 0;
}

SEC("kprobe/six_argument_function")
int BPF_KPROBE(enter_six, long a1, long a2, long a3, long a4, long a5, long a6)
{
	sixth_arg = a6;
	return 0;
}

SEC("kprobe/__x64_sys_mmap")
int BPF_KPROBE(enter_mmap_wrapper, struct pt_regs *regs)
{
	sixth_syscall_arg = PT_REGS_PARM6_CORE_SYSCALL(regs);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
