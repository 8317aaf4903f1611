/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A stand-in for ig's include/gadget/arm64/vmlinux.h in the build tests: the few kernel types the
 * test gadgets use, laid out as the arm64 kernel lays them out. It refuses any other target, so a
 * build that hands the arm64 directory to the amd64 compile fails.
 */
#ifndef __VMLINUX_H__
#define __VMLINUX_H__

#ifndef __TARGET_ARCH_arm64
#error "include/gadget/arm64/vmlinux.h used for a target other than __TARGET_ARCH_arm64"
#endif

#define VMLINUX_ARCH_MARK 0x22222222

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef unsigned long size_t;
typedef _Bool bool;

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
};

/* Argument registers x0..x7 are regs[0..7]: the sixth argument is regs[5], offset 40. */
struct user_pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
};

struct pt_regs {
	union {
		struct user_pt_regs user_regs;
		struct {
			u64 regs[31];
			u64 sp;
			u64 pc;
			u64 pstate;
		};
	};
	u64 orig_x0;
	__s32 syscallno;
};

#endif
