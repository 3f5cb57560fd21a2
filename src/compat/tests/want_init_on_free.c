// SPDX-License-Identifier: GPL-2.0
/* Linux 5.3: want_init_on_free(), freed pages are zeroed (init_on_free=1). */
#include <linux/module.h>
#include <linux/mm.h>

static bool __maybe_unused test(void)
{
	return want_init_on_free();
}
MODULE_LICENSE("GPL");
