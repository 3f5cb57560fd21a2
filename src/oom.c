// SPDX-License-Identifier: GPL-2.0
/*
 * OOM deflation: before the OOM killer picks a victim, the kernel asks its
 * notifiers to free memory. If the balloon gives pages back, nobody dies.
 * Whether it may is the oom_deflate knob's and the host's decision (engine.c).
 */
#include <linux/notifier.h>
#include <linux/oom.h>

#include "uniballoon.h"

static int ub_oom_notify(struct notifier_block *nb, unsigned long unused,
			 void *parm)
{
	unsigned long *freed = parm;

	*freed += ub_oom_deflate();
	return NOTIFY_OK;
}

static struct notifier_block ub_oom_nb = {
	.notifier_call = ub_oom_notify,
};

int ub_oom_init(void)
{
	return register_oom_notifier(&ub_oom_nb);
}

void ub_oom_exit(void)
{
	unregister_oom_notifier(&ub_oom_nb);
}
