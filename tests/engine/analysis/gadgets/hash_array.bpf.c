// Hash and array maps used from a kprobe, with globals in .rodata, .bss and .data.
#include <gadget/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u32);
	__type(value, u64);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, u32);
	__type(value, u64);
} totals SEC(".maps");

const volatile u32 target_pid = 0;
u64 events_seen;
u32 sample_rate = 7;

SEC("kprobe/do_sys_openat2")
int count_open(void *ctx)
{
	u32 pid = bpf_get_current_pid_tgid() >> 32;
	u64 one = 1, *value;
	u32 slot = 0;

	if (target_pid && target_pid != pid)
		return 0;
	events_seen += sample_rate;
	value = bpf_map_lookup_elem(&counts, &pid);
	if (value) {
		__sync_fetch_and_add(value, 1);
		if (*value > 100)
			bpf_map_delete_elem(&counts, &pid);
	} else {
		bpf_map_update_elem(&counts, &pid, &one, BPF_ANY);
	}
	value = bpf_map_lookup_elem(&totals, &slot);
	if (value)
		*value += 1;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
