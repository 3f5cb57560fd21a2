/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The VMware balloon protocol, as the host speaks it: a backdoor "inl" on
 * port 0x5670 with a magic in EAX, the command in ECX, arguments in EBX and
 * ESI; the status comes back in EAX, the result (target) in EBX, and START's
 * capabilities in ECX.
 */
#ifndef UB_VMWARE_PROTO_H
#define UB_VMWARE_PROTO_H

#define UBW_MAGIC		0x456c6d6f
#define UBW_PORT		0x5670

enum ubw_cmd {
	UBW_CMD_START			= 0,
	UBW_CMD_GET_TARGET		= 1,
	UBW_CMD_LOCK			= 2,
	UBW_CMD_UNLOCK			= 3,
	UBW_CMD_GUEST_ID		= 4,
	UBW_CMD_BATCHED_LOCK		= 6,
	UBW_CMD_BATCHED_UNLOCK		= 7,
	UBW_CMD_BATCHED_2M_LOCK		= 8,
	UBW_CMD_BATCHED_2M_UNLOCK	= 9,
	UBW_CMD_VMCI_DOORBELL_SET	= 10,
	UBW_CMD_NR,
};

#define UBW_CAP_BASIC		BIT(1)
#define UBW_CAP_BATCHED		BIT(2)
#define UBW_CAP_BATCHED_2M	BIT(3)
#define UBW_CAP_SIGNALLED_WAKEUP BIT(4)
#define UBW_CAP_64BIT_TARGET	BIT(5)

/* Statuses: per command in EAX, per entry in a batch's low bits. */
#define UBW_SUCCESS		0
#define UBW_FAILURE		((unsigned long)-1)
#define UBW_CMD_INVALID		1
#define UBW_PPN_INVALID		2
#define UBW_PPN_LOCKED		3
#define UBW_PPN_UNLOCKED	4
#define UBW_PPN_PINNED		5
#define UBW_PPN_NOTNEEDED	6
#define UBW_RESET		7
#define UBW_BUSY		8
#define UBW_SUCCESS_WITH_CAPS	0x03000000
#define UBW_NR_STATUS		9

/* Batch entries: bits 0-4 status (host), PAGE_SHIFT..63 the address. */
#define UBW_BATCH_STATUS_MASK	0x1f
#define UBW_BATCH_MAX		512
#define UBW_GUEST_LINUX		1
/* 2 MiB pages */
#define UBW_2M_ORDER		9

#endif /* UB_VMWARE_PROTO_H */
