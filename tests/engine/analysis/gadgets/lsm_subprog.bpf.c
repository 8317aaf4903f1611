// An LSM program calling bpf-to-bpf subprograms (static and global) and a bpf_loop callback.
#include <gadget/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, u32);
	__type(value, u32);
} denied SEC(".maps");

struct loop_state {
	u32 total;
};

static int add_step(u32 index, void *data)
{
	struct loop_state *state = data;

	state->total += index;
	return 0;
}

static __noinline int is_denied(u32 pid)
{
	return bpf_map_lookup_elem(&denied, &pid) != 0;
}

__noinline int record_denial(u32 pid)
{
	u32 count = 1;

	bpf_map_update_elem(&denied, &pid, &count, BPF_ANY);
	return is_denied(pid);
}

SEC("lsm/file_open")
int check_open(void *file)
{
	u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct loop_state state = {};

	bpf_loop(4, add_step, &state, 0);
	if (state.total > 100)
		return record_denial(pid);
	return is_denied(pid) ? -1 : 0;
}

char LICENSE[] SEC("license") = "GPL";
