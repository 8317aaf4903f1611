// Per-CPU array and per-CPU hash maps plus a ring buffer, used from a tracepoint.
#include <gadget/bpf_helpers.h>

struct event {
	u32 pid;
	u64 calls;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct event);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 64);
	__type(key, u32);
	__type(value, u64);
} per_cpu_calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} ring SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_execve")
int on_execve(void *ctx)
{
	u32 zero = 0;
	u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct event *event = bpf_map_lookup_elem(&scratch, &zero);
	u64 *calls;

	if (!event)
		return 0;
	calls = bpf_map_lookup_elem(&per_cpu_calls, &pid);
	event->pid = pid;
	event->calls = calls ? *calls : 0;
	bpf_ringbuf_output(&ring, event, sizeof(*event), 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
