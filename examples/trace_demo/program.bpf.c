// SPDX-License-Identifier: GPL-2.0
/*
 * trace_demo: report every openat(2) with the caller's pid, uid, comm and the file name.
 * Needs only <linux/bpf.h> and libbpf's <bpf/bpf_helpers.h>: the tracepoint context is
 * declared here instead of coming from a kernel vmlinux.h.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "demo_gadget.h"

/* openat's syscall number differs between architectures, so each arch gets an object of its own. */
#if defined(__TARGET_ARCH_x86)
#define DEMO_NR_OPENAT 257
#elif defined(__TARGET_ARCH_arm64)
#define DEMO_NR_OPENAT 56
#else
#error "trace_demo is built for x86 and arm64 only"
#endif

/* Layout of the syscalls:sys_enter_* tracepoints (see .../events/syscalls/sys_enter_openat/format). */
struct demo_sys_enter {
	__u16 common_type;
	__u8 common_flags;
	__u8 common_preempt_count;
	__s32 common_pid;
	__s64 syscall_nr;
	__u64 args[6];
};

/* Layout of raw_syscalls:sys_enter (see .../events/raw_syscalls/sys_enter/format). */
struct demo_raw_sys_enter {
	__u64 common;
	__s64 id;
	__u64 args[6];
};

struct event {
	__u64 timestamp_raw;
	__u32 pid;
	__u32 uid;
	__s32 dfd;
	__u32 flags_raw;
	char comm[DEMO_TASK_COMM_LEN];
	char fname[DEMO_PATH_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

/* openat calls per CPU, whichever process made them. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} openat_calls SEC(".maps");

/* 0 means every process; set with the gadget parameter --pid. */
const volatile __u32 targ_pid = 0;
DEMO_PARAM(targ_pid);

DEMO_TRACER(open, events, event);

SEC("tracepoint/syscalls/sys_enter_openat")
int trace_demo_openat(struct demo_sys_enter *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 pid = pid_tgid >> 32;
	struct event *e;

	if (targ_pid && targ_pid != pid)
		return 0;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0;

	e->timestamp_raw = bpf_ktime_get_boot_ns();
	e->pid = pid;
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->dfd = (__s32)ctx->args[0];
	e->flags_raw = (__u32)ctx->args[2];
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_probe_read_user_str(e->fname, sizeof(e->fname), (const void *)ctx->args[1]);

	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tracepoint/raw_syscalls/sys_enter")
int count_openat(struct demo_raw_sys_enter *ctx)
{
	__u32 zero = 0;
	__u64 *count;

	if (ctx->id != DEMO_NR_OPENAT)
		return 0;
	count = bpf_map_lookup_elem(&openat_calls, &zero);
	if (count)
		*count += 1;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
