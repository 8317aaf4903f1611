// One tracer whose event has a member for every rule ig's operators apply before a gadget runs
// (enum strings, uid/gid names, timestamp/errno/signal/syscall/bytes/duration/file formatters,
// L3/L4 endpoints, kernel and user stacks, container enrichment), plus an iterator. The gadget_*
// types are declared as ig's gadget/types.h declares them; their names are what the rules match.
#include <gadget/bpf_helpers.h>

typedef __u64 gadget_timestamp;
typedef __u64 gadget_mntns_id;
typedef __u32 gadget_uid;
typedef __u32 gadget_gid;
typedef __u32 gadget_errno;
typedef __u32 gadget_signal;
typedef __u64 gadget_syscall;
typedef __u64 gadget_bytes;
typedef __u64 gadget_duration;
typedef __u32 gadget_file_mode;
typedef __u32 gadget_file_flags;
typedef __u32 gadget_kernel_stack;

enum op { OP_OPEN, OP_CLOSE };
enum state { STATE_IDLE, STATE_BUSY };

union gadget_ip_addr_t {
	__u8 v6[16];
	__u32 v4;
};

struct gadget_l3endpoint_t {
	union gadget_ip_addr_t addr_raw;
	__u8 version;
};

struct gadget_l4endpoint_t {
	union gadget_ip_addr_t addr_raw;
	__u16 port;
	__u16 proto_raw;
	__u8 version;
};

struct gadget_user_stack {
	__u32 major;
	__u32 minor;
	__u64 inode;
	__u64 mtime_sec;
	__u32 mtime_nsec;
	__u32 base_addr_hash;
	__u32 stack_id;
	__u32 tgid_level0;
	__u32 pid_level0;
	__u32 pidns_level0;
	__u32 pid_level1;
	__u32 pidns_level1;
};

struct event {
	gadget_timestamp timestamp_raw;
	gadget_mntns_id mntns_id;
	gadget_uid uid;        /* no _raw suffix: the name field is "user" */
	gadget_gid gid_raw;    /* the name field takes the name without _raw: "gid" */
	enum op op_raw;        /* an enum: hidden, and "op" holds its name */
	enum state state;      /* an enum without _raw: only hidden */
	gadget_errno error_raw;
	gadget_signal sig_raw;
	gadget_syscall syscall_raw;
	gadget_bytes size_raw;
	gadget_duration latency_raw;
	gadget_file_mode mode_raw;
	gadget_file_flags flags_raw;
	gadget_kernel_stack kstack_raw;
	struct gadget_l4endpoint_t dst;
	struct gadget_l3endpoint_t src;
	struct gadget_user_stack ustack;
};

struct task_entry {
	__u32 pid;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

/* The map ig's kernel stack formatter insists on (gadget/kernel_stack_map.h names it so). */
struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 64);
	__uint(key_size, 4);
	__uint(value_size, 127 * 8);
} ig_kstack SEC(".maps");

const void *gadget_tracer_ops___events___event __attribute__((unused));
const struct event *unused_event __attribute__((unused));
const void *gadget_iter_tasks___task_entry___dump_tasks __attribute__((unused));
const struct task_entry *unused_task __attribute__((unused));

SEC("tracepoint/syscalls/sys_enter_openat")
int on_openat(void *ctx)
{
	struct event e = { .uid = 1 };

	bpf_ringbuf_output(&events, &e, sizeof(e), 0);
	return 0;
}

SEC("iter/task")
int dump_tasks(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
