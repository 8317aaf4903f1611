/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Minimal stand-ins for the gadget markers ig discovers in an eBPF object's BTF:
 * a global named gadget_tracer_<name>___<map>___<struct> declares a data source fed by a ring
 * buffer, and gadget_param_<var> exposes a `const volatile` global as a parameter.
 * Kept next to the example so it builds with only libbpf-dev and linux-libc-dev installed.
 */
#ifndef DEMO_GADGET_H
#define DEMO_GADGET_H

#define DEMO_TRACER(name, map, type)                                                   \
	const void *gadget_tracer_##name##___##map##___##type __attribute__((unused));  \
	const struct type *__demo_tracer_type_##name __attribute__((unused))

#define DEMO_PARAM(var) const void *gadget_param_##var __attribute__((unused))

#define DEMO_TASK_COMM_LEN 16
#define DEMO_PATH_MAX 128

#endif
