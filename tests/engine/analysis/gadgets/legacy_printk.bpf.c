// A legacy "maps" section definition, bpf_printk strings (.rodata.str1.1) and two programs in one section.
#include <gadget/bpf_helpers.h>

struct legacy_map_def {
	unsigned int type;
	unsigned int key_size;
	unsigned int value_size;
	unsigned int max_entries;
	unsigned int map_flags;
};

struct legacy_map_def old_style SEC("maps") = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = sizeof(u32),
	.value_size = sizeof(u64),
	.max_entries = 8,
};

u64 hits SEC(".data.counters") = 0;

SEC("kprobe/vfs_read")
int on_read(void *ctx)
{
	char fmt[] = "read %d\n";

	hits++;
	bpf_trace_printk(fmt, sizeof(fmt), 1);
	return 0;
}

SEC("kprobe/vfs_read")
int on_read_again(void *ctx)
{
	u32 key = 0;
	u64 *slot = bpf_map_lookup_elem(&old_style, &key);
	static const char message[] = "again %d\n";

	if (slot)
		bpf_trace_printk(message, sizeof(message), *slot);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
