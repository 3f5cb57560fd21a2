// SPDX-License-Identifier: GPL-2.0
/* Linux 5.11: page_poisoning_enabled_static(), freed pages are poisoned. */
#include <linux/module.h>
#include <linux/mm.h>

static bool __maybe_unused test(void)
{
	return page_poisoning_enabled_static();
}
MODULE_LICENSE("GPL");
