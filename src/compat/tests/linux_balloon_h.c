// SPDX-License-Identifier: GPL-2.0
/* Mainline renamed linux/balloon_compaction.h to linux/balloon.h. */
#include <linux/module.h>
#include <linux/balloon.h>

static struct page * __maybe_unused test(void)
{
	return balloon_page_alloc();
}
MODULE_LICENSE("GPL");
