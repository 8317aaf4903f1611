// A tracer and a map iterator declared the way IG's GADGET_TRACER / GADGET_MAPITER macros expand,
// with nested struct/union members, for the offline --show-datasources fields.
#include <gadget/bpf_helpers.h>

typedef __u64 gadget_timestamp;

enum op { OP_READ, OP_WRITE };

struct inner {
	u32 a;
	char tag[4];
};

struct event {
	gadget_timestamp timestamp;
	u32 pid;
	_Bool failed;
	char comm[16];
	struct inner nested;
	union {
		u32 as_u32;
		u8 bytes[4];
	} raw;
	enum op op;
	short delta;
	float ratio;
	void *ptr;
	u32 __reserved;
	char names[2][8];
};

struct key { u32 pid; };
struct value { u64 calls; };

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct key);
	__type(value, struct value);
} counts SEC(".maps");

const void *gadget_tracer_exec___events___event __attribute__((unused));
const struct event *__gadget_tracer_type_exec __attribute__((unused));
const void *gadget_mapiter_calls___counts __attribute__((unused));

SEC("tracepoint/syscalls/sys_enter_execve")
int on_execve(void *ctx)
{
	struct event e = { .pid = 1 };
	struct key k = { .pid = 1 };
	struct value v = { .calls = 1 };

	bpf_map_update_elem(&counts, &k, &v, BPF_ANY);
	bpf_ringbuf_output(&events, &e, sizeof(e), 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
