// SPDX-License-Identifier: GPL-2.0
/*
 * The VMware backend's transport in production builds (vmware_transport.h):
 * the balloon's backdoor, and vmw_vmci's doorbell where that is loaded.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cc_platform.h>
#include <linux/dmi.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/printk.h>
#include <linux/vmw_vmci_api.h>
#include <linux/vmw_vmci_defs.h>
#include <asm/hypervisor.h>

#include "vmware_proto.h"
#include "vmware_transport.h"

const char *const ubw_transport_name = "backdoor port 0x5670";

/*
 * vmw_balloon speaks the same protocol to the same host: two drivers would
 * each reset the host's view of the other's pages.
 */
const char *const ubw_intree_names[] = {
	"vmw_balloon",
};
const unsigned int ubw_nr_intree_names = ARRAY_SIZE(ubw_intree_names);

static bool ubw_detect(void)
{
	return x86_hyper_type == X86_HYPER_VMWARE ||
	       dmi_match(DMI_SYS_VENDOR, "VMware, Inc.");
}

int ubw_transport_probe(bool forced)
{
	if (!forced && !ubw_detect())
		return -ENODEV;
	/* see ubw_hypercall(): the port needs registers the host can see */
	if (cc_platform_has(CC_ATTR_GUEST_MEM_ENCRYPT)) {
		pr_warn("vmware: not started: the balloon's I/O port cannot reach the host from a guest with encrypted memory\n");
		return -EOPNOTSUPP;
	}
	return 0;
}

/* The backdoor needs no setup: the host is there or the probe said no. */
int ubw_transport_init(void)
{
	return 0;
}

void ubw_transport_exit(void)
{
}

/*
 * The balloon has a backdoor of its own (vmware_proto.h: port 0x5670, its
 * own magic), which only an "inl" reaches; vmw_balloon does the same. The
 * kernel's VMware hypercalls (asm/vmware.h) choose VMCALL, VMMCALL or TDX
 * but serve the other backdoor only: VMWARE_HYPERCALL's port is 0x5658,
 * and the vmware_hypercall*() helpers of later kernels fix its magic too.
 * So a guest whose registers the host cannot see (SEV-ES, TDX) cannot
 * balloon: ubw_transport_probe() refuses to start there.
 */
unsigned long ubw_hypercall(unsigned long cmd, unsigned long arg1,
			    unsigned long arg2, unsigned long *result,
			    unsigned long *caps)
{
	unsigned long status, ecx, edx, esi = arg2;

	/* the host may write every register it reads: all are outputs */
	asm volatile("inl %%dx"
		     : "=a"(status), "=c"(ecx), "=d"(edx), "=b"(*result),
		       "+S"(esi)
		     : "0"(UBW_MAGIC), "1"(cmd), "2"(UBW_PORT), "3"(arg1)
		     : "memory");
	*caps = ecx;
	return status;
}

/*
 * vmw_vmci is optional: we use it only if it is loaded, and hold it while
 * our doorbell exists.
 */
int ubw_doorbell_create(struct vmci_handle *handle, vmci_callback notify,
			void *data)
{
	typeof(&vmci_doorbell_create) create = symbol_get(vmci_doorbell_create);
	int err;

	if (!create)
		return -ENODEV;
	err = create(handle, VMCI_FLAG_DELAYED_CB,
		     VMCI_PRIVILEGE_FLAG_RESTRICTED, notify, data);
	if (err != VMCI_SUCCESS) {
		symbol_put(vmci_doorbell_create);
		return -EIO;
	}
	return 0;
}

void ubw_doorbell_destroy(struct vmci_handle handle)
{
	typeof(&vmci_doorbell_destroy) destroy;

	destroy = symbol_get(vmci_doorbell_destroy);
	if (destroy) {
		destroy(handle);
		symbol_put(vmci_doorbell_destroy);
	}
	symbol_put(vmci_doorbell_create);
}
