// SPDX-License-Identifier: GPL-2.0
/*
 * Taking pages from the guest and giving them back, a batch per host
 * exchange. Pages are taken and accounted the way the kernel's balloon
 * infrastructure does it (balloon_dev_info, PageOffline, the
 * balloon_inflate/deflate and balloon_migrate vmstat counters). They leave
 * MemTotal while ballooned, unless the host lets the guest take them back on
 * OOM. Huge pages (a backend's huge_order) are kept on a list of their own.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/delay.h>
#include <linux/gfp.h>
#include <linux/migrate.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/vmstat.h>

#include "engine.h"
#include "ub_trace.h"

/* Refused pages held aside at most (4 MiB): more go back to the guest. */
#define UB_REFUSED_MAX		(SZ_4M >> PAGE_SHIFT)
/* Host resets in a row wait up to this long before the next exchange. */
#define UB_RESET_BACKOFF_MAX	(30 * HZ)
/* Pages in migration cannot be dequeued; they come back very soon. */
#define UB_ISOLATED_RETRY	(HZ / 50)
/* A host that fails, refuses or owes answers is asked again at most this late. */
#define UB_HOST_BACKOFF_MAX	(10 * HZ)
/*
 * Detach waits this long, in all, for the host to answer the requests it
 * owes; after that, and after any exchange that times out, no further
 * exchange is tried.
 */
#define UB_DETACH_HOST_WAIT	(10 * HZ)

/*
 * The page mover's balloon; under engine.lock, except that the batches are
 * their users' (below) and readers of the counts in ub_pages_snapshot()
 * take them racily.
 */
static struct ub_page_state {
	/*
	 * The attached page mover and its argument, from attach to detach
	 * (NULL otherwise); ub_pages_snapshot() reads pm without the lock.
	 */
	const struct ub_page_mover *pm;
	void *priv;
	/*
	 * Pages the balloon holds: taken pages, those of unanswered requests
	 * included. Read through ub_size() (engine.c) without the lock.
	 */
	unsigned long size;
	struct balloon_dev_info pages;	/* 4 KiB pages, movable */
	/* pages of the backend's huge_order (not movable), and how many */
	struct list_head huge;
	unsigned long huge_count;
	/* huge allocations failed or were refused: 4 KiB until cycle end */
	bool huge_off;
	/* pages the host refused this cycle: kept so we don't take them again */
	struct list_head refused;
	unsigned long refused_count;	/* pages, at most about UB_REFUSED_MAX */
	/*
	 * Pages in inflate requests the host has not answered (an exchange
	 * timed out): it may still discard them whenever it gets to them.
	 * They count in pg.size and stay off the lists deflation takes from
	 * until the host has answered (ub_host_answered_locked).
	 */
	struct list_head unanswered;		/* order 0 */
	struct list_head unanswered_huge;	/* the backend's huge_order */
	unsigned long unanswered_count;		/* pages of order 0 in all */
	/*
	 * A migration's new page whose inflate timed out: the balloon core
	 * put it on pg.pages, where deflation skips it until the host answers.
	 */
	struct page *migrated_unanswered;
	/*
	 * Pages (order 0) of the deflation batch in an exchange: off the
	 * lists but still in pg.size while the engine lock is dropped for it.
	 */
	unsigned long exchanging;
	/*
	 * jiffies: the delay after a failure, a refusal of everything or a
	 * host that owes answers, and no inflation before host_retry_at (a
	 * kick, e.g. each VMware poll, does not shorten it)
	 */
	unsigned long host_backoff;
	unsigned long host_retry_at;
	bool need_reset;		/* a host reset seen where we could not act */
	bool need_restart;		/* the protocol must be started again */
	unsigned long reset_backoff;	/* jiffies, after resets in a row */
	unsigned long reset_until;	/* no inflation before this */
	ktime_t inflate_next;		/* rate limit: earliest next batch */
	ktime_t deflate_next;
	/* deflation and migration exchanges: under engine.exchange */
	struct ub_batch batch;
	/* OOM and pressure deflation without an exchange: under engine.lock */
	struct ub_batch untold_batch;
	/* the worker's, filled unlocked, then under engine.exchange */
	struct ub_batch inflate_batch;
} pg = {
	.huge = LIST_HEAD_INIT(pg.huge),
	.refused = LIST_HEAD_INIT(pg.refused),
	.unanswered = LIST_HEAD_INIT(pg.unanswered),
	.unanswered_huge = LIST_HEAD_INIT(pg.unanswered_huge),
};

#ifdef CONFIG_BALLOON_MIGRATION
static int ub_migratepage(struct balloon_dev_info *pages, struct page *newpage,
			  struct page *page, enum migrate_mode mode);
#endif

static void ub_page_leaves(struct page *page, unsigned int order)
{
	if (ub_adjusts_managed())
		adjust_managed_page_count(page, -(1L << order));
}

static void ub_page_returns(struct page *page, unsigned int order)
{
	if (ub_adjusts_managed())
		adjust_managed_page_count(page, 1L << order);
}

/*
 * Every 4 KiB page of a ballooned block is PageOffline, as the balloon
 * core makes each 4 KiB balloon page: hibernation and dump tools skip
 * such pages, and the allocator wants the type cleared before a free.
 */
static void ub_block_offline(struct page *page, unsigned int order,
			     bool offline)
{
	unsigned int i;

	for (i = 0; i < (1U << order); i++) {
		if (offline)
			__SetPageOffline(page + i);
		else
			__ClearPageOffline(page + i);
	}
}

/* Pages of one batch when a rate limit is set: about 100 ms worth. */
static unsigned int ub_rate_batch(u64 rate, unsigned int max)
{
	u64 pages;

	if (!rate)
		return max;
	pages = div_u64(rate, 10) >> PAGE_SHIFT;
	return clamp_t(u64, pages, 1, max);
}

/*
 * Charge @bytes against @rate and return how long to wait before the next
 * batch. An idle period earns no credit: the budget restarts at @start.
 */
static unsigned long ub_rate_delay(ktime_t *next, u64 rate, u64 bytes,
				   ktime_t start)
{
	ktime_t now;

	if (!rate)
		return 0;
	if (ktime_before(*next, start))
		*next = start;
	*next = ktime_add_ns(*next, div64_u64(bytes * NSEC_PER_SEC, rate));
	now = ktime_get();
	if (!ktime_after(*next, now))
		return 0;
	ub_count(UB_STAT_RATE_DELAYS, 1);
	return max_t(unsigned long, 1,
		     nsecs_to_jiffies(ktime_to_ns(ktime_sub(*next, now))));
}

static void ub_report_size_locked(void)
{
	ub_assert_locked();

	if (pg.pm->report_size)
		pg.pm->report_size(pg.priv, pg.size);
}

/*
 * One inflate or deflate exchange: engine.lock is dropped while the host is
 * waited for, and only engine.exchange is held, so that OOM and pressure
 * deflation, sysfs writers and the poll never wait for a host that
 * stalls. The batch's pages are the caller's (on no list), and nothing
 * else can reset, restart or detach meanwhile (each needs engine.exchange);
 * anything else under engine.lock (the size, the lists, the target) may
 * change, and the caller reads it again afterwards.
 */
static int ub_pages_exchange_locked(int (*op)(void *priv,
					       struct ub_batch *batch),
				    struct ub_batch *batch)
{
	int err;

	ub_assert_exchange_locked();
	ub_assert_locked();

	ub_unlock();
	err = op(pg.priv, batch);
	ub_lock();
	return err;
}

/*
 * Huge pages (2 MiB blocks, for virtio and VMware) are taken only where the
 * allocator has them without reclaim. They are not movable, though they
 * fragment nothing: each holds a whole pageblock. huge_blocks=N takes 4 KiB
 * pages only, all movable, for guests that offline memory or use CMA.
 */
static bool ub_huge_blocks = true;
module_param_named(huge_blocks, ub_huge_blocks, bool, 0644);
MODULE_PARM_DESC(huge_blocks,
		 "take 2 MiB blocks where the allocator has them free (default Y)");

#define UB_HUGE_GFP	((GFP_HIGHUSER & ~__GFP_RECLAIM) | __GFP_NOWARN | \
			 __GFP_NOMEMALLOC)

static void ub_batch_init(struct ub_batch *batch, unsigned int order)
{
	batch->order = order;
	batch->count = 0;
	batch->started = 0;
	batch->stop = false;
	batch->has_target = false;
	batch->timeout = 0;
}

static void ub_batch_add(struct ub_batch *batch, struct page *page)
{
	batch->refused[batch->count] = false;
	batch->pages[batch->count++] = page;
}

/* Pages of @order in one batch: the mover's limit, and its limit in bytes. */
static unsigned long ub_batch_pages(unsigned int order)
{
	unsigned long bytes = pg.pm->huge_batch_bytes ?: UB_BATCH_MAX_BYTES;

	if (!order)
		return pg.pm->batch_max;
	return clamp_t(unsigned long, bytes >> (PAGE_SHIFT + order), 1,
		       pg.pm->batch_max);
}

/* Pages the balloon holds in order-0 pages (on the balloon_dev_info list). */
static unsigned long ub_small_pages(void)
{
	return pg.size - (pg.huge_count << pg.pm->huge_order) -
	       pg.unanswered_count - pg.exchanging;
}

/*
 * The next retry's delay after a host that failed, refused or still owes
 * answers: doubling from UB_RETRY_DELAY up to UB_HOST_BACKOFF_MAX, so that
 * a host that refuses for hours costs a few exchanges a minute, not five a
 * second. An exchange that goes through starts it again.
 */
static unsigned long ub_host_backoff_locked(void)
{
	ub_assert_locked();

	pg.host_backoff = clamp(2 * pg.host_backoff, UB_RETRY_DELAY,
				UB_HOST_BACKOFF_MAX);
	pg.host_retry_at = jiffies + pg.host_backoff;
	return pg.host_backoff;
}

/*
 * The host has answered every request it was sent (an exchange returned 0,
 * or the backend's settle() said so): the pages of timed-out inflate
 * requests join the balloon's lists, where deflation and migration may
 * take them.
 */
static void ub_host_answered_locked(void)
{
	unsigned int order = pg.pm->huge_order;
	struct page *page, *next;

	ub_assert_locked();

	pg.migrated_unanswered = NULL;
	if (!pg.unanswered_count)
		return;
	list_for_each_entry_safe(page, next, &pg.unanswered, lru) {
		list_del(&page->lru);
		balloon_page_enqueue(&pg.pages, page);
	}
	list_for_each_entry_safe(page, next, &pg.unanswered_huge, lru) {
		list_move(&page->lru, &pg.huge);
		pg.huge_count++;
		ub_block_offline(page, order, true);
		__count_vm_events(BALLOON_INFLATE, 1 << order);
	}
	pg.unanswered_count = 0;
}

/*
 * True if the host owes no answer: every inflate and deflate request it was
 * sent is answered. Waits up to @timeout for that (0: only looks). Until
 * then no page it may still discard goes back to the guest, and no new
 * exchange starts.
 */
static bool ub_host_settled_locked(unsigned long timeout)
{
	int err;

	ub_assert_exchange_locked();
	ub_assert_locked();

	if (!pg.pm->settle)
		return true;
	if (timeout) {
		/* a wait for the host: as an exchange, without engine.lock */
		ub_unlock();
		err = pg.pm->settle(pg.priv, timeout);
		ub_lock();
	} else {
		err = pg.pm->settle(pg.priv, 0);
	}
	if (err)
		return false;
	ub_host_answered_locked();
	return true;
}

/* An inflated page the host has not answered for: hold it apart. */
static void ub_hold_unanswered(struct page *page, unsigned int order)
{
	list_add_tail(&page->lru, order ? &pg.unanswered_huge :
					  &pg.unanswered);
	pg.unanswered_count += 1UL << order;
}

/*
 * Refused pages go back to the guest: at the end of an inflation cycle
 * (@cycle_end: huge pages may be tried again too), when UB_REFUSED_MAX of
 * them are held, and before OOM deflation, so that a host that refuses
 * everything does not drain the guest.
 */
void ub_release_refused_locked(bool cycle_end)
{
	struct page *page, *next;

	ub_assert_locked();

	list_for_each_entry_safe(page, next, &pg.refused, lru) {
		list_del(&page->lru);
		__free_page(page);
	}
	pg.refused_count = 0;
	if (cycle_end)
		pg.huge_off = false;
}

/*
 * The host has forgotten every page (a reset, or a shutdown that says so):
 * free them all without telling it. Pages in the middle of a migration
 * come back to the list when their migration fails on our lock.
 */
void ub_drop_all_locked(void)
{
	unsigned int order = pg.pm->huge_order;
	struct page *page, *next;
	LIST_HEAD(list);

	ub_assert_exchange_locked();
	ub_assert_locked();

	ub_release_refused_locked(true);
	while (ub_small_pages()) {
		/* in chunks: the list lock is held with interrupts off */
		size_t got = balloon_page_list_dequeue(&pg.pages, &list,
						       min_t(unsigned long,
							     ub_small_pages(),
							     UB_BATCH_MAX));

		if (!got) {
			schedule_timeout_uninterruptible(1);
			continue;
		}
		list_for_each_entry_safe(page, next, &list, lru) {
			list_del(&page->lru);
			ub_page_returns(page, 0);
			put_page(page);
		}
		pg.size -= got;
		cond_resched();
	}
	list_for_each_entry_safe(page, next, &pg.huge, lru) {
		list_del(&page->lru);
		ub_page_returns(page, order);
		__count_vm_events(BALLOON_DEFLATE, 1 << order);
		ub_block_offline(page, order, false);
		__free_pages(page, order);
		cond_resched();
	}
	pg.size -= pg.huge_count << order;
	pg.huge_count = 0;
	/* a host that has forgotten every page will discard none of them */
	list_for_each_entry_safe(page, next, &pg.unanswered, lru) {
		list_del(&page->lru);
		ub_page_returns(page, 0);
		__free_page(page);
	}
	list_for_each_entry_safe(page, next, &pg.unanswered_huge, lru) {
		list_del(&page->lru);
		ub_page_returns(page, order);
		__free_pages(page, order);
	}
	pg.size -= pg.unanswered_count;
	pg.unanswered_count = 0;
	pg.migrated_unanswered = NULL;
	ub_report_size_locked();
}

static void ub_restart_locked(void)
{
	int err;

	ub_assert_exchange_locked();
	ub_assert_locked();

	err = pg.pm->restart ? pg.pm->restart(pg.priv) : 0;
	pg.need_restart = !!err;
	if (err)
		ub_backend_error("restart", err);
}

/*
 * The host demanded a reset: it holds none of our pages any more. Resets
 * in a row back off (doubling up to UB_RESET_BACKOFF_MAX), so a host that
 * answers RESET to everything does not keep a vCPU allocating and freeing.
 */
void ub_host_reset_locked(void)
{
	ub_assert_exchange_locked();
	ub_assert_locked();

	trace_backend(pg.pm->base.name, "reset", 0);
	ub_count(UB_STAT_HOST_RESETS, 1);
	pg.need_reset = false;
	pg.reset_backoff = clamp(2 * pg.reset_backoff, UB_RETRY_DELAY,
				 UB_RESET_BACKOFF_MAX);
	pg.reset_until = jiffies + pg.reset_backoff;
	ub_drop_all_locked();
	ub_restart_locked();
}

/*
 * A page mover attached: an empty balloon, a protocol just started.
 * Returns the features the balloon adds (migration, where compaction is).
 */
unsigned long ub_pages_attach_locked(const struct ub_page_mover *pm,
				     void *priv)
{
	ub_assert_locked();

	WRITE_ONCE(pg.pm, pm);
	pg.priv = priv;
	pg.size = 0;
	ub_size_owner_locked(&pg.size);

	/*
	 * The balloon adjusts the managed page count itself (ub_page_leaves,
	 * ub_page_returns), for its huge blocks as for its 4 KiB pages:
	 * balloon_devinfo_init() leaves the core's adjust_managed_page_count
	 * off, where the core has it, so that no page is counted twice.
	 */
	balloon_devinfo_init(&pg.pages);
	pg.huge_count = 0;
	pg.huge_off = false;
	pg.need_reset = false;
	pg.need_restart = false;
	pg.reset_backoff = 0;
	pg.host_backoff = 0;
	/* pages a previous detach had to keep are not the balloon's any more */
	INIT_LIST_HEAD(&pg.unanswered);
	INIT_LIST_HEAD(&pg.unanswered_huge);
	pg.unanswered_count = 0;
	pg.migrated_unanswered = NULL;
#ifdef CONFIG_BALLOON_MIGRATION
	pg.pages.migratepage = ub_migratepage;
	return UB_FEAT_MIGRATION;
#else
	return 0;
#endif
}

/*
 * Before an exchange: act on a reset seen during migration and start the
 * protocol again if it has to be. False if it is still down.
 */
bool ub_pages_ready_locked(void)
{
	ub_assert_exchange_locked();
	ub_assert_locked();

	if (pg.need_reset)
		ub_host_reset_locked();
	if (pg.need_restart)
		ub_restart_locked();
	return !pg.need_restart;
}

/* The backend is gone: none of its operations is called again. */
void ub_pages_detach_locked(void)
{
	ub_assert_exchange_locked();
	ub_assert_locked();

	WRITE_ONCE(pg.pm, NULL);
	pg.priv = NULL;
}

/* For readers that do not take the lock: counts that may race a change. */
void ub_pages_snapshot(struct ub_snapshot *snap)
{
	const struct ub_page_mover *pm = READ_ONCE(pg.pm);

	snap->isolated = 0;
	snap->huge_pages = 0;
	snap->unanswered = 0;
	snap->huge_order = 0;
	if (!pm)
		return;
	snap->isolated = READ_ONCE(pg.pages.isolated_pages);
	snap->huge_pages = READ_ONCE(pg.huge_count);
	snap->unanswered = READ_ONCE(pg.unanswered_count);
	snap->huge_order = pm->huge_order;
}

/*
 * For OOM and pressure deflation, before they take a lock: whether a page
 * mover is attached, and whether its exchanges may wait for the host. The
 * mover is read once, racily; the caller checks again under the locks.
 */
bool ub_pages_peek(bool *settles)
{
	const struct ub_page_mover *pm = READ_ONCE(pg.pm);

	*settles = pm && pm->settle;
	return pm;
}

/* A failed exchange: a reset is handled now, anything else retried later. */
static unsigned long ub_host_failed_locked(const char *event, int err)
{
	unsigned long delay;

	ub_assert_locked();

	if (err == -ECONNRESET) {
		ub_host_reset_locked();
		/* the next plan waits as well */
		ub_blocked_locked(UB_BLOCK_HOST_RESET, pg.reset_backoff);
		return pg.reset_backoff;
	}
	ub_backend_error(event, err);
	delay = ub_host_backoff_locked();
	ub_blocked_locked(UB_BLOCK_HOST_ERROR, delay);
	return delay;
}

/* balloon_page_alloc()'s: movable where balloon pages can migrate */
#define UB_SMALL_GFP	(IS_ENABLED(CONFIG_BALLOON_MIGRATION) ? \
			 GFP_HIGHUSER_MOVABLE : GFP_HIGHUSER)

/*
 * 4 KiB pages are taken first where the allocator has them without reclaim;
 * once that fails, for the rest of the batch, with the light reclaim of
 * balloon_page_alloc() (no retries, never the OOM killer).
 */
static struct page *ub_alloc_small(bool *reclaim)
{
	struct page *page;

	if (!*reclaim) {
		page = alloc_page((UB_SMALL_GFP & ~__GFP_RECLAIM) |
				  __GFP_NOMEMALLOC | __GFP_NOWARN);
		if (page)
			return page;
		*reclaim = true;
	}
	return balloon_page_alloc();
}

/*
 * Once pages come only through reclaim, a batch ends after this long and
 * the next one waits as long: inflation that has to evict the guest's own
 * memory takes at most about half of a CPU, so the guest's tasks keep
 * running while the host's request is served.
 */
#define UB_RECLAIM_BATCH_TIME	(HZ / 5)

/*
 * Fill @batch with up to @n pages of @order; true if cut short by the time
 * limit. Runs in the worker without engine.lock: allocation may reclaim, and
 * nothing else (deflation, OOM, readers) should wait for it.
 */
static bool ub_fill_batch(struct ub_batch *batch, unsigned int order,
			  unsigned long n)
{
	unsigned long deadline = jiffies + UB_RECLAIM_BATCH_TIME;
	bool reclaim = false;

	ub_batch_init(batch, order);
	while (batch->count < n) {
		struct page *page;

		if (reclaim && batch->count && time_after(jiffies, deadline))
			return true;
		/* allocation zeroes pages (init_on_alloc): let others run */
		cond_resched();
		/*
		 * A batch of huge pages can be large (1 GiB): if the guest
		 * takes memory meanwhile, stop where the plan would have.
		 */
		if (order && batch->count && ub_reserve_room() < (1UL << order))
			break;
		page = order ? alloc_pages(UB_HUGE_GFP, order) :
			       ub_alloc_small(&reclaim);

		if (!page) {
			if (!order)
				ub_count(UB_STAT_ALLOC_FAILURES, 1);
			break;
		}
		ub_batch_add(batch, page);
	}
	return false;
}

/* Free pages [from, count) of a batch the host never saw. */
static void ub_batch_free_tail(struct ub_batch *batch, unsigned int from)
{
	unsigned int i;

	for (i = from; i < batch->count; i++)
		__free_pages(batch->pages[i], batch->order);
	batch->count = min(batch->count, from);
}

/* A page the host refused stays aside, as 4 KiB pages, until cycle end. */
static void ub_set_aside(struct page *page, unsigned int order)
{
	unsigned int i;

	ub_count(UB_STAT_HOST_REFUSALS, 1);
	if (order)
		split_page(page, order);
	for (i = 0; i < (1U << order); i++)
		list_add(&page[i].lru, &pg.refused);
	pg.refused_count += 1U << order;
}

/*
 * Plan the next inflation batch: how many pages of which order. Returns
 * 0 and sets *@delay if there is nothing to take now.
 */
unsigned long ub_inflate_plan_locked(unsigned long want, unsigned int *order,
				     unsigned long *delay)
{
	struct ub_settings set;

	ub_assert_exchange_locked();
	ub_assert_locked();

	if (pg.reset_backoff && time_before(jiffies, pg.reset_until)) {
		*delay = pg.reset_until - jiffies;
		ub_blocked_locked(UB_BLOCK_HOST_RESET, *delay);
		return 0;
	}
	/* the reason the last step gave (sysfs blocked) still stands */
	if (pg.host_backoff && time_before(jiffies, pg.host_retry_at)) {
		*delay = pg.host_retry_at - jiffies;
		return 0;
	}
	/* a host that owes answers gets no new request, and no pages taken */
	if (!ub_host_settled_locked(0)) {
		*delay = ub_host_backoff_locked();
		ub_blocked_locked(UB_BLOCK_HOST_SILENT, *delay);
		return 0;
	}
	*order = pg.pm->huge_order;
	ub_get_settings(&set);
	want = min_t(unsigned long, want,
		     ub_rate_batch(set.inflate_rate,
				   pg.pm->batch_max << *order));
	want = min(want, ub_reserve_room());
	if (!want) {
		/* held there as by a floor until MemAvailable rises */
		ub_reserve_met_locked();
		*delay = UB_RETRY_DELAY;
		ub_blocked_locked(UB_BLOCK_RESERVE, *delay);
		return 0;
	}
	if (!READ_ONCE(ub_huge_blocks) || pg.huge_off ||
	    want < (1UL << *order) ||
	    (pg.pm->huge_ready && !pg.pm->huge_ready(pg.priv)))
		*order = 0;
	return want;
}

/*
 * Hand a filled batch to the host and account for what it took. The plan
 * was made before the pages were allocated; whatever changed meanwhile (an
 * OOM deflation, a lower target, a pause) is honoured here by freeing the
 * pages the target no longer wants before the host sees them.
 */
static unsigned long ub_inflate_commit_locked(struct ub_batch *batch,
					      unsigned long n, bool cut,
					      bool huge_failed)
{
	unsigned int order = batch->order, i, accepted = 0;
	unsigned long requested, room, delay, rate_delay;
	enum ub_block blocked = UB_BLOCK_NONE;
	struct ub_settings set;
	bool refusing;
	enum ub_reason why;
	ktime_t start;
	int err;

	ub_assert_exchange_locked();
	ub_assert_locked();

	if (ub_paused_locked()) {
		ub_batch_free_tail(batch, 0);
		return UB_IDLE;
	}
	pg.huge_off |= huge_failed;
	requested = ub_requested_locked(&why);
	room = requested > pg.size ? (requested - pg.size) >> order : 0;
	if (batch->count > room)
		ub_batch_free_tail(batch, room);
	if (!batch->count)
		return 0;

	start = ktime_get();
	err = ub_pages_exchange_locked(pg.pm->inflate, batch);
	if (batch->has_target)
		ub_host_target_locked(batch->target, false);
	if (err && err != -ETIMEDOUT) {
		ub_batch_free_tail(batch, 0);
		return ub_host_failed_locked("inflate", err);
	}
	delay = 0;
	if (err) {
		/*
		 * The host has the requests sent so far but has not answered:
		 * it may discard those pages whenever it gets to them, so
		 * they are the balloon's, held apart until it answers. Pages
		 * it never saw go back now.
		 */
		ub_backend_error("inflate", err);
		ub_batch_free_tail(batch, batch->started);
		delay = ub_host_backoff_locked();
		blocked = UB_BLOCK_HOST_SILENT;
	} else {
		ub_host_answered_locked();
	}
	for (i = 0; i < batch->count; i++) {
		struct page *page = batch->pages[i];

		if (err) {
			ub_hold_unanswered(page, order);
		} else if (batch->refused[i]) {
			ub_set_aside(page, order);
			pg.huge_off |= order > 0;
			continue;
		} else if (order) {
			ub_block_offline(page, order, true);
			list_add(&page->lru, &pg.huge);
			pg.huge_count++;
			__count_vm_events(BALLOON_INFLATE, 1 << order);
		} else {
			balloon_page_enqueue(&pg.pages, page);
		}
		ub_page_leaves(page, order);
		accepted++;
	}
	/* too many set aside: give them back */
	if (pg.refused_count > UB_REFUSED_MAX)
		ub_release_refused_locked(false);
	/* the host took none of them: back off */
	refusing = !err && !accepted;
	pg.size += (unsigned long)accepted << order;
	if (accepted)
		pg.reset_backoff = 0;
	if (accepted && !err && !refusing)
		pg.host_backoff = 0;
	ub_report_size_locked();
	ub_count(UB_STAT_INFLATED, ub_pages_to_bytes(accepted << order));
	trace_inflate(accepted, order,
		      ktime_to_ns(ktime_sub(ktime_get(), start)));

	ub_get_settings(&set);
	rate_delay = ub_rate_delay(&pg.inflate_next, set.inflate_rate,
				   ub_pages_to_bytes(batch->count << order),
				   start);
	if (rate_delay > delay && blocked == UB_BLOCK_NONE)
		blocked = UB_BLOCK_RATE;
	delay = max(delay, rate_delay);
	if (batch->stop)
		delay = max(delay, pg.pm->base.poll_interval ?: UB_RETRY_DELAY);
	/* short of pages, wait; refused, back off */
	if (batch->count < n && !cut) {
		delay = max(delay, UB_RETRY_DELAY);
		if (blocked == UB_BLOCK_NONE)
			blocked = UB_BLOCK_MEMORY;
	}
	if (refusing) {
		delay = max(delay, ub_host_backoff_locked());
		blocked = UB_BLOCK_HOST_REFUSING;
	}
	/* pages come only through reclaim: leave the guest the CPU as long */
	if (cut)
		delay = max_t(unsigned long, delay, UB_RECLAIM_BATCH_TIME);
	ub_blocked_locked(blocked, delay);
	return delay;
}

/*
 * One inflation batch, from the worker only: the pages are allocated with
 * no lock held, then engine.exchange is taken for the host exchange and
 * engine.lock for the lists. The worker owns pg.inflate_batch; pg.pm cannot
 * change while it runs (ub_detach stops the worker before it lets the
 * backend go).
 */
unsigned long ub_inflate(unsigned long want, unsigned int order)
{
	struct ub_batch *batch = &pg.inflate_batch;
	bool cut, huge_failed = false;
	unsigned long n, delay;

	n = min(want >> order, ub_batch_pages(order));
	cut = ub_fill_batch(batch, order, n);
	if (order && !batch->count) {
		/* no huge page free without reclaim: fall back to 4 KiB */
		huge_failed = true;
		n = min(want, ub_batch_pages(0));
		cut = ub_fill_batch(batch, 0, n);
	}
	ub_exchange_lock();
	ub_lock();
	if (batch->count) {
		delay = ub_inflate_commit_locked(batch, n, cut, huge_failed);
	} else {
		pg.huge_off |= huge_failed;
		delay = UB_RETRY_DELAY;
		ub_blocked_locked(UB_BLOCK_MEMORY, delay);
	}
	ub_unlock();
	ub_exchange_unlock();
	return delay;
}

/*
 * Only huge pages are left and less than one is to go back: where the host
 * counts 4 KiB frames, split one into order-0 balloon pages (movable, like
 * any other) rather than give back more than asked. The host keeps them;
 * the guest's books say the block left the balloon and its pages came in,
 * as the balloon core counts each page it takes (the vmstat events; the
 * core leaves the managed page count to us, see ub_pages_attach_locked).
 */
static void ub_split_huge_locked(void)
{
	unsigned int order = pg.pm->huge_order, i;
	struct page *page;
	LIST_HEAD(list);

	ub_assert_locked();

	page = list_first_entry(&pg.huge, struct page, lru);
	list_del(&page->lru);
	pg.huge_count--;
	__count_vm_events(BALLOON_DEFLATE, 1 << order);
	ub_block_offline(page, order, false);
	split_page(page, order);
	for (i = 0; i < (1U << order); i++)
		list_add_tail(&page[i].lru, &list);
	balloon_page_list_enqueue(&pg.pages, &list);
}

/* Take up to @want pages (order-0 first) off the balloon into @batch. */
static void ub_take_pages_locked(struct ub_batch *batch, unsigned long want)
{
	unsigned int order = pg.pm->huge_order;
	struct page *page, *next;
	LIST_HEAD(list);

	ub_assert_locked();

	if (!ub_small_pages() && pg.huge_count && want < (1UL << order) &&
	    pg.pm->huge_splittable)
		ub_split_huge_locked();
	if (ub_small_pages() || !pg.huge_count) {
		ub_batch_init(batch, 0);
		balloon_page_list_dequeue(&pg.pages, &list,
					  min(want, ub_batch_pages(0)));
		list_for_each_entry_safe(page, next, &list, lru) {
			list_del(&page->lru);
			if (page == pg.migrated_unanswered) {
				/* the host may still discard it: held apart */
				pg.migrated_unanswered = NULL;
				ub_hold_unanswered(page, 0);
				continue;
			}
			ub_batch_add(batch, page);
		}
		return;
	}
	ub_batch_init(batch, order);
	want = min(DIV_ROUND_UP(want, 1UL << order), ub_batch_pages(order));
	list_for_each_entry_safe(page, next, &pg.huge, lru) {
		if (batch->count == want)
			break;
		list_del(&page->lru);
		pg.huge_count--;
		ub_batch_add(batch, page);
	}
}

static void ub_put_back(struct page *page, unsigned int order)
{
	if (order) {
		list_add(&page->lru, &pg.huge);
		pg.huge_count++;
	} else {
		balloon_page_enqueue(&pg.pages, page);
	}
}

/*
 * The host has answered a deflation batch (@err, 0 or -errno), or was not
 * asked (untold): pages it would not release, and with @keep_all every
 * page, go back on the lists; the rest go back to the guest. With @force
 * (the device is going away) or after a reset every page goes back.
 * Returns the number of pages released.
 */
static unsigned long ub_deflate_done_locked(struct ub_batch *batch, int err,
					    bool force, bool keep_all,
					    ktime_t start)
{
	unsigned int i, order = batch->order;
	unsigned long released = 0;

	ub_assert_locked();

	for (i = 0; i < batch->count; i++) {
		struct page *page = batch->pages[i];

		/* after a reset the host holds nothing: release them all */
		if (err != -ECONNRESET && !force &&
		    (keep_all || batch->refused[i])) {
			ub_put_back(page, order);
			continue;
		}
		ub_page_returns(page, order);
		if (order) {
			__count_vm_events(BALLOON_DEFLATE, 1 << order);
			ub_block_offline(page, order, false);
			__free_pages(page, order);
		} else {
			put_page(page);
		}
		released++;
	}
	released <<= order;
	pg.size -= released;
	ub_report_size_locked();
	ub_count(UB_STAT_DEFLATED, ub_pages_to_bytes(released));
	trace_deflate(released >> order, order,
		      ktime_to_ns(ktime_sub(ktime_get(), start)));
	return released;
}

/*
 * Give up to @want pages back to the guest, telling the host first; pages
 * the host would not release stay in the balloon. With @force (the device
 * is going away) pages are released even if the host could not be told.
 * @timeout bounds the wait for the host's answer (0: the backend's own).
 * engine.lock is dropped during the exchange. Returns the number of pages
 * released.
 */
unsigned long ub_deflate_locked(unsigned long want, bool force,
				unsigned long timeout)
{
	struct ub_batch *batch = &pg.batch;
	unsigned long released;
	bool keep_all = false, settled;
	ktime_t start;
	int err;

	ub_assert_exchange_locked();
	ub_assert_locked();

	/*
	 * A host that owes answers is not sent more (its queue is stuck):
	 * where it must hear first nothing goes back; elsewhere the pages it
	 * has answered for go back untold. The pages of its unanswered
	 * requests are not on the lists taken from.
	 */
	settled = ub_host_settled_locked(0);
	if (!settled && !force && (ub_features() & UB_FEAT_TELL_HOST))
		return 0;
	ub_take_pages_locked(batch, want);
	if (!batch->count)
		return 0;
	batch->timeout = timeout;

	start = ktime_get();
	if (settled) {
		pg.exchanging = (unsigned long)batch->count << batch->order;
		err = ub_pages_exchange_locked(pg.pm->deflate, batch);
		pg.exchanging = 0;
	} else {
		err = -ETIMEDOUT;
	}
	if (batch->has_target)
		ub_host_target_locked(batch->target, false);
	if (!err)
		pg.host_backoff = 0;
	if (err && err != -ECONNRESET) {
		if (settled)
			ub_backend_error("deflate", err);
		/* The host must hear first: keep the pages. */
		keep_all = !force && (ub_features() & UB_FEAT_TELL_HOST);
	}
	released = ub_deflate_done_locked(batch, err, force, keep_all, start);
	if (err == -ECONNRESET)
		ub_host_reset_locked();
	return released;
}

/*
 * Give up to @want pages back without telling the host, for OOM and
 * pressure deflation while an exchange is in flight (engine.exchange busy, its
 * holder perhaps waiting for a host that stalled). Only where the host
 * need not hear first: the pages on the lists are all answered for, and
 * the size the host reads (report_size) says they left. Returns the number
 * of pages released.
 */
unsigned long ub_deflate_untold_locked(unsigned long want)
{
	struct ub_batch *batch = &pg.untold_batch;

	ub_assert_locked();

	if (ub_features() & UB_FEAT_TELL_HOST)
		return 0;
	ub_take_pages_locked(batch, want);
	if (!batch->count)
		return 0;
	return ub_deflate_done_locked(batch, -ETIMEDOUT, false, false,
				      ktime_get());
}

unsigned long ub_deflate_step_locked(unsigned long want)
{
	ktime_t start = ktime_get();
	unsigned long got, delay;
	struct ub_settings set;

	ub_assert_exchange_locked();
	ub_assert_locked();

	ub_get_settings(&set);
	want = min_t(unsigned long, want,
		     ub_rate_batch(set.deflate_rate,
				   pg.pm->batch_max << pg.pm->huge_order));
	got = ub_deflate_locked(want, false, 0);
	if (!got && pg.pages.isolated_pages)
		return UB_ISOLATED_RETRY;
	if (!got) {
		/* what is left waits for the host's answer, or it keeps them */
		delay = ub_host_backoff_locked();
		ub_blocked_locked(pg.unanswered_count ||
				  !ub_host_settled_locked(0) ?
				  UB_BLOCK_HOST_SILENT : UB_BLOCK_HOST_REFUSING,
				  delay);
		return delay;
	}
	/* the rate may have changed while the exchange ran without the lock */
	ub_get_settings(&set);
	delay = ub_rate_delay(&pg.deflate_next, set.deflate_rate,
			      ub_pages_to_bytes(got), start);
	ub_blocked_locked(delay ? UB_BLOCK_RATE : UB_BLOCK_NONE, delay);
	return delay;
}

/*
 * Detach: every page goes back to the guest, the host told while it
 * answers. It has UB_DETACH_HOST_WAIT to answer the requests it owes; the
 * pages of those it never answers stay allocated for good, since it may
 * still discard them. Returns how many pages stay so.
 */
unsigned long ub_pages_drain_locked(void)
{
	unsigned long kept;

	ub_assert_exchange_locked();
	ub_assert_locked();

	ub_host_settled_locked(UB_DETACH_HOST_WAIT);
again:
	while (pg.size > pg.unanswered_count) {
		if (ub_deflate_locked(pg.size, true, 0))
			continue;
		/* only pages in the middle of a migration are left */
		ub_unlock();
		schedule_timeout_uninterruptible(1);
		ub_lock();
	}
	if (pg.unanswered_count && ub_host_settled_locked(0))
		goto again;
	kept = pg.unanswered_count;
	/* never freed: the lists are forgotten, the pages stay allocated */
	INIT_LIST_HEAD(&pg.unanswered);
	INIT_LIST_HEAD(&pg.unanswered_huge);
	pg.unanswered_count = 0;
	pg.size -= kept;
	return kept;
}

#ifdef CONFIG_BALLOON_MIGRATION
/* One page to the host (@take) or back from it; 0 if the host agreed. */
static int ub_migrate_exchange(struct page *page, bool take)
{
	struct ub_batch *batch = &pg.batch;
	int err;

	ub_batch_init(batch, 0);
	ub_batch_add(batch, page);
	err = ub_pages_exchange_locked(take ? pg.pm->inflate : pg.pm->deflate,
				       batch);
	if (err == -ETIMEDOUT && take) {
		/*
		 * The host may discard the page later: it is the balloon's,
		 * and deflation skips it until the host has answered.
		 */
		ub_backend_error("migrate", err);
		pg.migrated_unanswered = page;
		return 0;
	}
	if (err == -ECONNRESET) {
		/* the reset waits for this page to be back: the worker acts */
		pg.need_reset = true;
		ub_kick();
	} else if (err) {
		ub_backend_error("migrate", err);
	}
	return err ?: (batch->refused[0] ? -EAGAIN : 0);
}

/*
 * Compaction moves a ballooned page. Most hosts take the new page before
 * they give the old one back, so the balloon never shrinks on the way; a
 * host at its target may refuse a page more (VMware), so there the old page
 * goes back first and, if the new one is then refused, the balloon is one
 * page smaller until the worker refills it.
 */
static int ub_migratepage(struct balloon_dev_info *pages,
			  struct page *newpage, struct page *page,
			  enum migrate_mode mode)
{
	bool taken;

	/*
	 * The worker may be allocating, and allocation may compact; an
	 * exchange in flight may wait for a host that stalled.
	 */
	if (!ub_exchange_trylock())
		return -EAGAIN;
	if (!ub_trylock()) {
		ub_exchange_unlock();
		return -EAGAIN;
	}
	if (!ub_active_locked())
		goto again;
	/* nothing moves while the host owes answers */
	if (!ub_host_settled_locked(0))
		goto again;
	if (pg.pm->migrate_release_first) {
		if (ub_migrate_exchange(page, false))
			goto again;
		taken = !ub_migrate_exchange(newpage, true);
	} else {
		if (ub_migrate_exchange(newpage, true))
			goto again;
		taken = true;
		/*
		 * If this fails the host holds both: nothing to undo. A host
		 * that did not answer for the new page is not sent more.
		 */
		if (!pg.migrated_unanswered)
			ub_migrate_exchange(page, false);
	}

	if (taken) {
		if (page_zone(page) != page_zone(newpage)) {
			ub_page_returns(page, 0);
			ub_page_leaves(newpage, 0);
		}
	} else {
		ub_page_returns(page, 0);
		pg.size--;
		ub_report_size_locked();
		ub_count(UB_STAT_DEFLATED, PAGE_SIZE);
		ub_kick();
	}
	ub_count(UB_STAT_MIGRATIONS, 1);
	ub_unlock();
	ub_exchange_unlock();

	/*
	 * The balloon core puts @newpage on the list and lets @page go;
	 * -ENOENT: @page left the balloon, @newpage did not come in.
	 */
	return ub_balloon_migrated(pages, newpage, page, taken ? 0 : -ENOENT);

again:
	ub_unlock();
	ub_exchange_unlock();
	return -EAGAIN;
}
#endif
