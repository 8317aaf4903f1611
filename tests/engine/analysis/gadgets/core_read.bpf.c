// A CO-RE field access on a kernel struct defined here (no vmlinux.h, no kernel BTF needed).
#include <gadget/bpf_helpers.h>

struct fake_ns {
	u32 inum;
};

struct fake_task {
	int pid;
	int tgid;
	struct fake_ns *ns;
} __attribute__((preserve_access_index));

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 32);
	__uint(value_size, sizeof(u32));
} tgids SEC(".maps");

SEC("kprobe/wake_up_new_task")
int on_new_task(struct fake_task *task)
{
	int tgid = 0;

	bpf_probe_read_kernel(&tgid, sizeof(tgid), &task->tgid);
	bpf_map_push_elem(&tgids, &tgid, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
