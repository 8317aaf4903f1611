/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gadgetstore: tracing macros that libbpf added in 1.2, for libbpf 1.0 and 1.1 headers.
 *
 * `gadgetstore image build` puts the directory holding this file on the include path only when
 * the libbpf headers clang would otherwise use report a version older than 1.2
 * (<bpf/libbpf_version.h>). It stands in for <bpf/bpf_tracing.h>: it includes the real header
 * (the next one on the search path), then defines what that version lacks, each name only if the
 * real header left it undefined. Written for gadgetstore from the behaviour libbpf documents:
 *
 *  - the sixth argument of a traced kernel function (PT_REGS_PARM6, PT_REGS_PARM6_CORE), and
 *    BPF_KPROBE accepting six named arguments;
 *  - the sixth argument of a system call as seen by a syscall wrapper
 *    (PT_REGS_PARM6_SYSCALL, PT_REGS_PARM6_CORE_SYSCALL);
 *  - BPF_UPROBE and BPF_URETPROBE: the user-space spellings of BPF_KPROBE and BPF_KRETPROBE,
 *    which behave exactly like them.
 *
 * Only the two architectures Inspektor Gadget builds for get the sixth argument; elsewhere it
 * stays undefined and a gadget using it fails to compile as it would without this file.
 */
#ifndef GADGETSTORE_LIBBPF_COMPAT_TRACING_H
#define GADGETSTORE_LIBBPF_COMPAT_TRACING_H

#include_next <bpf/bpf_tracing.h>

/*
 * Where the sixth argument lives in the register frame. The C calling convention and the system
 * call convention agree on it for both targets: r9 on x86-64, x5 (regs[5]) on arm64. The register
 * frame type is the one the real header casts to (__PT_REGS_CAST).
 */
#if defined(bpf_target_x86)
#define __gadgetstore_sixth_arg_reg r9
#elif defined(bpf_target_arm64)
#define __gadgetstore_sixth_arg_reg regs[5]
#endif

#ifdef __gadgetstore_sixth_arg_reg

#ifndef PT_REGS_PARM6
#define PT_REGS_PARM6(regs_ptr) (__PT_REGS_CAST(regs_ptr)->__gadgetstore_sixth_arg_reg)
#endif

#ifndef PT_REGS_PARM6_CORE
#define PT_REGS_PARM6_CORE(regs_ptr) BPF_CORE_READ(__PT_REGS_CAST(regs_ptr), __gadgetstore_sixth_arg_reg)
#endif

#ifndef PT_REGS_PARM6_SYSCALL
#define PT_REGS_PARM6_SYSCALL(regs_ptr) PT_REGS_PARM6(regs_ptr)
#endif

#ifndef PT_REGS_PARM6_CORE_SYSCALL
#define PT_REGS_PARM6_CORE_SYSCALL(regs_ptr) PT_REGS_PARM6_CORE(regs_ptr)
#endif

/*
 * BPF_KPROBE picks its argument unpacker by the number of named arguments (___bpf_kprobe_args<N>);
 * older headers stop at five. The sixth unpacks the first five as before, then the sixth register.
 */
#ifndef ___bpf_kprobe_args6
#define ___bpf_kprobe_args6(first, rest...) ___bpf_kprobe_args5(rest), (void *)PT_REGS_PARM6(ctx)
#endif

#endif /* __gadgetstore_sixth_arg_reg */

#ifndef BPF_UPROBE
#define BPF_UPROBE(name, args...) BPF_KPROBE(name, ##args)
#endif

#ifndef BPF_URETPROBE
#define BPF_URETPROBE(name, args...) BPF_KRETPROBE(name, ##args)
#endif

#endif /* GADGETSTORE_LIBBPF_COMPAT_TRACING_H */
