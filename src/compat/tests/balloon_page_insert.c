// SPDX-License-Identifier: GPL-2.0
/*
 * Until the balloon core (mm/balloon.c, Linux 7.x) did a migrated page's
 * bookkeeping itself, a driver's migratepage put the new page on the list
 * (balloon_page_insert() under the balloon's pages_lock) and finalized the
 * old page. Either header name: the rename and the change are separate.
 */
#include <linux/module.h>
#if __has_include("linux/balloon.h")
#include <linux/balloon.h>
#else
#include <linux/balloon_compaction.h>
#endif

static void __maybe_unused test(struct balloon_dev_info *b, struct page *page)
{
	unsigned long flags;

	spin_lock_irqsave(&b->pages_lock, flags);
	balloon_page_insert(b, page);
	spin_unlock_irqrestore(&b->pages_lock, flags);
	balloon_page_finalize(page);
}
MODULE_LICENSE("GPL");
