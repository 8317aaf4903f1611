// Same program/map shape as IG's gadgets/ci/image_inspect, whose unit test gives the expected
// ebpf.flowchart and ebpf.sequence text; lets us compare our graphs with IG's own golden output.
#include <gadget/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, u32);
	__type(value, u64);
} map1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, u32);
	__type(value, u64);
} map2 SEC(".maps");

const volatile int ifindex = 0;
const volatile u32 targ_ms = 0;

// What IG's GADGET_PARAM / GADGET_MAPITER macros expand to: unused pointer globals in .bss.
const void *gadget_param_ifindex __attribute__((unused));
const void *gadget_param_targ_ms __attribute__((unused));
const void *gadget_mapiter_qdisc___map1 __attribute__((unused));

SEC("program1")
int consume_skb(void *ctx)
{
	static u64 initial_hist[4];
	u32 key = ifindex;

	if (bpf_map_lookup_elem(&map2, &key))
		bpf_map_delete_elem(&map2, &key);
	return ++initial_hist[key & 3];
}

SEC("program2")
int kfree_skb(void *ctx)
{
	return ifindex;
}

SEC("program3")
int qdisc_dequeue(void *ctx)
{
	u32 key = targ_ms;
	u64 one = 1;

	if (!bpf_map_lookup_elem(&map1, &key))
		bpf_map_update_elem(&map1, &key, &one, BPF_ANY);
	return 0;
}

SEC("program4")
int qdisc_enqueue(void *ctx)
{
	u32 key = ifindex;
	u64 now = 0;

	bpf_map_update_elem(&map2, &key, &now, BPF_ANY);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
