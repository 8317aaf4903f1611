// Extern symbols resolved at load time: a kfunc and a ksym variable (.ksyms) and a kconfig value.
#include <gadget/bpf_helpers.h>

#define __ksym __attribute__((section(".ksyms")))
#define __kconfig __attribute__((section(".kconfig")))

extern u64 gadget_test_kfunc(u32 value) __ksym;
extern const int gadget_test_ksym_var __ksym;
extern int LINUX_KERNEL_VERSION __kconfig;

SEC("kprobe/do_nanosleep")
int use_externs(void *ctx)
{
	int value = 0;

	if (LINUX_KERNEL_VERSION < 0x050a00)
		return 0;
	bpf_probe_read_kernel(&value, sizeof(value), &gadget_test_ksym_var);
	return gadget_test_kfunc(value);
}

char LICENSE[] SEC("license") = "GPL";
