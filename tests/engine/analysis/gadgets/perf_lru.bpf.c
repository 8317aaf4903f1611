// A perf event array and an LRU hash used from a raw tracepoint.
#include <gadget/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(u32));
	__uint(value_size, sizeof(u32));
} perf_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 128);
	__type(key, u64);
	__type(value, u64);
} recent SEC(".maps");

SEC("raw_tracepoint/sched_switch")
int on_switch(void *ctx)
{
	u64 id = bpf_get_current_pid_tgid();
	u64 *seen = bpf_map_lookup_elem(&recent, &id);

	if (seen)
		return 0;
	bpf_map_update_elem(&recent, &id, &id, BPF_NOEXIST);
	bpf_perf_event_output(ctx, &perf_events, BPF_F_CURRENT_CPU, &id, sizeof(id));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
