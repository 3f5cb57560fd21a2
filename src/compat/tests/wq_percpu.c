// SPDX-License-Identifier: GPL-2.0
/*
 * Linux 6.17 added WQ_PERCPU (an enum constant, so no #ifdef can see it);
 * 7.x warns at alloc_workqueue() when neither it nor WQ_UNBOUND is given.
 */
#include <linux/module.h>
#include <linux/workqueue.h>

static unsigned int __maybe_unused test = WQ_PERCPU;
MODULE_LICENSE("GPL");
