/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A stand-in for ig's include/gadget/amd64/vmlinux.h in the build tests: the few kernel types the
 * test gadgets use, laid out as the x86-64 kernel lays them out. It refuses any other target, so a
 * build that hands the amd64 directory to the arm64 compile fails.
 */
#ifndef __VMLINUX_H__
#define __VMLINUX_H__

#ifndef __TARGET_ARCH_x86
#error "include/gadget/amd64/vmlinux.h used for a target other than __TARGET_ARCH_x86"
#endif

#define VMLINUX_ARCH_MARK 0x11111111

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

/* The kernel's register frame: the sixth argument (function or system call) is r9, offset 64. */
struct pt_regs {
	unsigned long r15;
	unsigned long r14;
	unsigned long r13;
	unsigned long r12;
	unsigned long bp;
	unsigned long bx;
	unsigned long r11;
	unsigned long r10;
	unsigned long r9;
	unsigned long r8;
	unsigned long ax;
	unsigned long cx;
	unsigned long dx;
	unsigned long si;
	unsigned long di;
	unsigned long orig_ax;
	unsigned long ip;
	unsigned long cs;
	unsigned long flags;
	unsigned long sp;
	unsigned long ss;
};

#endif
