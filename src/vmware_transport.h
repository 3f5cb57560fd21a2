/* SPDX-License-Identifier: GPL-2.0 */
/*
 * How the VMware backend (vmware.c) reaches the balloon host: the one seam
 * between the protocol and whatever carries it. Kbuild links exactly one
 * implementation: the backdoor (vmware_backdoor.c) in production builds,
 * the lab's model of the host in test builds (make UB_TEST_HOST_MODEL=y).
 * vmware.c is the same in both.
 */
#ifndef UB_VMWARE_TRANSPORT_H
#define UB_VMWARE_TRANSPORT_H

#include <linux/types.h>
#include <linux/vmw_vmci_defs.h>

/* What /sys/kernel/debug/balloon/backend shows as "transport:". */
extern const char *const ubw_transport_name;

/*
 * Modules that speak to the same host (vmw_balloon): the backend does not
 * start while one is loaded, and keeps them from loading while it runs.
 */
extern const char *const ubw_intree_names[];
extern const unsigned int ubw_nr_intree_names;

/*
 * Before anything else: -ENODEV if there is no host to talk to and the
 * backend was not forced, another errno if it cannot be reached at all.
 */
int ubw_transport_probe(bool forced);

/* Around the backend's life, once it is sure to start; may fail. */
int ubw_transport_init(void);
void ubw_transport_exit(void);

/*
 * One command (vmware_proto.h): the status is returned, the result (EBX)
 * and the capabilities (ECX) are written to *result and *caps.
 */
unsigned long ubw_hypercall(unsigned long cmd, unsigned long arg1,
			    unsigned long arg2, unsigned long *result,
			    unsigned long *caps);

/* The VMCI doorbell the host rings when the target changes. */
int ubw_doorbell_create(struct vmci_handle *handle, vmci_callback notify,
			void *data);
void ubw_doorbell_destroy(struct vmci_handle handle);

#endif /* UB_VMWARE_TRANSPORT_H */
