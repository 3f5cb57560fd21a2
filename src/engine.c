// SPDX-License-Identifier: GPL-2.0
/*
 * The page engine: one worker moves the balloon towards the target in force,
 * a batch at a time, within the floor and the rate limits.
 *
 * Pages are taken and accounted the way the kernel's balloon infrastructure
 * does it (balloon_dev_info, PageOffline, the balloon_inflate/deflate and
 * balloon_migrate vmstat counters). They leave MemTotal while ballooned,
 * unless the host lets the guest take them back on OOM.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/delay.h>
#include <linux/ktime.h>
#include <linux/migrate.h>
#include <linux/mm.h>
#include <linux/mutex.h>
#include <linux/vmstat.h>
#include <linux/workqueue.h>

#include "uniballoon.h"
#include "ub_trace.h"

/* After an allocation failure or a host error, try again this much later. */
#define UB_RETRY_DELAY		(HZ / 5)
/* While the floor holds, look at MemAvailable again this often. */
#define UB_FLOOR_RECHECK	HZ
/* Pages in migration cannot be dequeued; they come back very soon. */
#define UB_ISOLATED_RETRY	(HZ / 50)
#define UB_IDLE			ULONG_MAX

#define UB_DEFAULT_OOM_DEFLATE_SIZE	(16ULL << 20)

const char *const ub_stat_names[UB_STAT_NR] = {
	[UB_STAT_INFLATED]		= "inflated",
	[UB_STAT_DEFLATED]		= "deflated",
	[UB_STAT_ALLOC_FAILURES]	= "alloc_failures",
	[UB_STAT_HOST_REFUSALS]		= "host_refusals",
	[UB_STAT_HOST_ERRORS]		= "host_errors",
	[UB_STAT_OOM_DEFLATIONS]	= "oom_deflations",
	[UB_STAT_OOM_DEFLATED]		= "oom_deflated",
	[UB_STAT_TARGET_CHANGES]	= "target_changes",
	[UB_STAT_FLOOR_HOLDS]		= "floor_holds",
	[UB_STAT_RATE_DELAYS]		= "rate_delays",
	[UB_STAT_MIGRATIONS]		= "migrations",
	[UB_STAT_HOST_RESETS]		= "host_resets",
};

static const char *const ub_reason_names[] = {
	[UB_REASON_HOST]	= "host",
	[UB_REASON_USER]	= "user",
	[UB_REASON_OOM]		= "oom",
	[UB_REASON_FLOOR]	= "floor",
};

const char *ub_reason_name(enum ub_reason reason)
{
	return ub_reason_names[reason];
}

static struct uniballoon {
	/* serialises the host protocol, the page lists and all state below */
	struct mutex lock;
	struct balloon_dev_info pages;
	/* pages the host refused this cycle: kept so we don't take them again */
	struct list_head refused;
	/* pages of the backend's huge_order (not movable), and how many */
	struct list_head huge;
	unsigned long huge_count;
	/* huge allocations failed or were refused: 4 KiB until cycle end */
	bool huge_off;
	bool need_reset;		/* a host reset seen where we could not act */
	bool need_restart;		/* the protocol must be started again */

	const struct ub_backend_ops *ops;
	void *priv;
	unsigned long features;
	bool paused;

	unsigned long size;		/* pages the host holds */
	unsigned long host_target;	/* pages the host asks for */
	unsigned long user_target;	/* pages; valid if user_override */
	unsigned long oom_cap;		/* pages; valid if oom_capped */
	unsigned long floor_cap;	/* pages; valid if floor_held */
	bool user_override;
	bool oom_capped;
	bool floor_held;

	struct ub_settings set;
	ktime_t inflate_next;		/* rate limit: earliest next batch */
	ktime_t deflate_next;

	struct ub_batch batch;
	struct workqueue_struct *wq;
	struct delayed_work work;
	struct delayed_work poll_work;
	atomic64_t stats[UB_STAT_NR];
} ub;

static inline void ub_count(enum ub_stat stat, u64 n)
{
	atomic64_add(n, &ub.stats[stat]);
}

u64 ub_stat_read(enum ub_stat stat)
{
	return atomic64_read(&ub.stats[stat]);
}

/*
 * Ballooned pages leave MemTotal, except when the host lets the guest take
 * them back on OOM: then they still count as the guest's memory, so that
 * overcommit checks let a process ask for what the balloon would release.
 */
static inline bool ub_adjusts_managed(void)
{
	return !(ub.features & UB_FEAT_OOM_DEFLATE);
}

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

static inline u64 ub_pages_to_bytes(unsigned long pages)
{
	return (u64)pages << PAGE_SHIFT;
}

/* Memory the guest would have with an empty balloon. */
unsigned long ub_guest_pages(void)
{
	return totalram_pages() + (ub_adjusts_managed() ? READ_ONCE(ub.size) : 0);
}

/* The target before the floor: the user's or the host's, capped after OOM. */
static unsigned long ub_requested_locked(enum ub_reason *why)
{
	unsigned long target = ub.host_target;
	enum ub_reason reason = UB_REASON_HOST;

	if (ub.user_override) {
		target = ub.user_target;
		reason = UB_REASON_USER;
	}
	if (ub.oom_capped && ub.oom_cap < target) {
		target = ub.oom_cap;
		reason = UB_REASON_OOM;
	}
	*why = reason;
	return target;
}

static unsigned long ub_target_locked(enum ub_reason *why)
{
	unsigned long target = ub_requested_locked(why);

	if (ub.floor_held && ub.floor_cap < target) {
		target = ub.floor_cap;
		*why = UB_REASON_FLOOR;
	}
	return target;
}

/* Trace the target in force if a state change moved it. */
static void ub_note_target_locked(unsigned long old, enum ub_reason cause)
{
	enum ub_reason why;
	unsigned long now = ub_target_locked(&why);

	if (now != old)
		trace_target(ub_pages_to_bytes(old), ub_pages_to_bytes(now),
			     ub_reason_name(cause));
}

static void ub_kick(void)
{
	if (ub.wq)
		mod_delayed_work(ub.wq, &ub.work, 0);
}

void ub_backend_error(const char *event, int err)
{
	ub_count(UB_STAT_HOST_ERRORS, 1);
	trace_backend(ub.ops ? ub.ops->name : "none", event, err);
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
	if (ub.ops->report_size)
		ub.ops->report_size(ub.priv, ub.size);
}

/* Huge pages are taken only where the allocator has them without reclaim. */
#define UB_HUGE_GFP	((GFP_HIGHUSER & ~__GFP_RECLAIM) | __GFP_NOWARN | \
			 __GFP_NOMEMALLOC)

static void ub_batch_init(struct ub_batch *batch, unsigned int order)
{
	batch->order = order;
	batch->count = 0;
	batch->stop = false;
	batch->has_target = false;
}

static void ub_batch_add(struct ub_batch *batch, struct page *page)
{
	batch->refused[batch->count] = false;
	batch->pages[batch->count++] = page;
}

/*
 * The host's target, as it asked for it (@request: a notification, such as
 * virtio's config change) or as we learned it (a poll, or the answer to a
 * command). A request, a repeated one too, ends an OOM cap: the host saw
 * the deflation in the balloon's size and asks again. A polled target ends
 * it only when it changes, or the balloon would refill a second after OOM.
 */
static void ub_host_target_locked(unsigned long pages, bool request)
{
	bool changed = pages != ub.host_target;
	unsigned long old;
	enum ub_reason why;

	old = ub_target_locked(&why);
	if (changed) {
		ub.host_target = pages;
		ub_count(UB_STAT_TARGET_CHANGES, 1);
	}
	if (!ub.user_override && (request || changed))
		ub.oom_capped = false;
	ub_note_target_locked(old, UB_REASON_HOST);
}

/* Pages the balloon holds in order-0 pages (on the balloon_dev_info list). */
static unsigned long ub_small_pages(void)
{
	return ub.size - (ub.huge_count << ub.ops->huge_order);
}

/* End of an inflation cycle: refused pages may now go back to the guest. */
static void ub_release_refused_locked(void)
{
	struct page *page, *next;

	list_for_each_entry_safe(page, next, &ub.refused, lru) {
		list_del(&page->lru);
		__free_page(page);
	}
	ub.huge_off = false;
}

/*
 * The host has forgotten every page (a reset, or a shutdown that says so):
 * free them all without telling it. Pages in the middle of a migration
 * come back to the list when their migration fails on our lock.
 */
static void ub_drop_all_locked(void)
{
	unsigned int order = ub.ops->huge_order;
	struct page *page, *next;
	LIST_HEAD(list);

	ub_release_refused_locked();
	while (ub_small_pages()) {
		size_t got = balloon_page_list_dequeue(&ub.pages, &list,
						       ub_small_pages());

		if (!got) {
			schedule_timeout_uninterruptible(1);
			continue;
		}
		list_for_each_entry_safe(page, next, &list, lru) {
			list_del(&page->lru);
			ub_page_returns(page, 0);
			put_page(page);
		}
		ub.size -= got;
	}
	list_for_each_entry_safe(page, next, &ub.huge, lru) {
		list_del(&page->lru);
		ub_page_returns(page, order);
		__count_vm_events(BALLOON_DEFLATE, 1 << order);
		__free_pages(page, order);
	}
	ub.size -= ub.huge_count << order;
	ub.huge_count = 0;
	ub_report_size_locked();
}

static void ub_restart_locked(void)
{
	int err = ub.ops->restart ? ub.ops->restart(ub.priv) : 0;

	ub.need_restart = !!err;
	if (err)
		ub_backend_error("restart", err);
}

/* The host demanded a reset: it holds none of our pages any more. */
static void ub_host_reset_locked(void)
{
	trace_backend(ub.ops->name, "reset", 0);
	ub_count(UB_STAT_HOST_RESETS, 1);
	ub.need_reset = false;
	ub_drop_all_locked();
	ub_restart_locked();
}

/* A failed exchange: a reset is handled now, anything else retried later. */
static unsigned long ub_host_failed_locked(const char *event, int err)
{
	if (err == -ECONNRESET) {
		ub_host_reset_locked();
		return 0;
	}
	ub_backend_error(event, err);
	return UB_RETRY_DELAY;
}

/* Pages the floor still lets us take. */
static unsigned long ub_floor_allowance(void)
{
	long avail = si_mem_available();
	unsigned long floor = ub.set.floor >> PAGE_SHIFT;

	return avail > 0 && avail > floor ? avail - floor : 0;
}

static void ub_fill_batch(struct ub_batch *batch, unsigned int order,
			  unsigned long n)
{
	ub_batch_init(batch, order);
	while (batch->count < n) {
		struct page *page = order ? alloc_pages(UB_HUGE_GFP, order) :
					    balloon_page_alloc();

		if (!page) {
			if (!order)
				ub_count(UB_STAT_ALLOC_FAILURES, 1);
			break;
		}
		ub_batch_add(batch, page);
	}
}

/* A page the host refused stays aside, as 4 KiB pages, until cycle end. */
static void ub_set_aside(struct page *page, unsigned int order)
{
	unsigned int i;

	ub_count(UB_STAT_HOST_REFUSALS, 1);
	if (order)
		split_page(page, order);
	for (i = 0; i < (1U << order); i++)
		list_add(&page[i].lru, &ub.refused);
}

static unsigned long ub_inflate_step_locked(unsigned long want)
{
	unsigned int order = ub.ops->huge_order, i, accepted = 0;
	struct ub_batch *batch = &ub.batch;
	unsigned long n, delay;
	ktime_t start;
	int err;

	want = min_t(unsigned long, want,
		     ub_rate_batch(ub.set.inflate_rate,
				   ub.ops->batch_max << order));
	if (ub.huge_off || want < (1UL << order) ||
	    (ub.ops->huge_ready && !ub.ops->huge_ready(ub.priv)))
		order = 0;
	n = min_t(unsigned long, want >> order, ub.ops->batch_max);
	ub_fill_batch(batch, order, n);
	if (order && !batch->count) {
		/* no huge page free without reclaim: fall back to 4 KiB */
		ub.huge_off = true;
		order = 0;
		n = min_t(unsigned long, want, ub.ops->batch_max);
		ub_fill_batch(batch, 0, n);
	}
	if (!batch->count)
		return UB_RETRY_DELAY;

	start = ktime_get();
	err = ub.ops->inflate(ub.priv, batch);
	if (batch->has_target)
		ub_host_target_locked(batch->target, false);
	if (err) {
		for (i = 0; i < batch->count; i++)
			__free_pages(batch->pages[i], order);
		return ub_host_failed_locked("inflate", err);
	}
	for (i = 0; i < batch->count; i++) {
		struct page *page = batch->pages[i];

		if (batch->refused[i]) {
			ub_set_aside(page, order);
			ub.huge_off |= order > 0;
			continue;
		}
		if (order) {
			list_add(&page->lru, &ub.huge);
			ub.huge_count++;
			__count_vm_events(BALLOON_INFLATE, 1 << order);
		} else {
			balloon_page_enqueue(&ub.pages, page);
		}
		ub_page_leaves(page, order);
		accepted++;
	}
	ub.size += (unsigned long)accepted << order;
	ub_report_size_locked();
	ub_count(UB_STAT_INFLATED, ub_pages_to_bytes(accepted << order));
	trace_inflate(accepted, order,
		      ktime_to_ns(ktime_sub(ktime_get(), start)));

	delay = ub_rate_delay(&ub.inflate_next, ub.set.inflate_rate,
			      ub_pages_to_bytes(batch->count << order), start);
	if (batch->stop)
		delay = max(delay, ub.ops->poll_interval ?: UB_RETRY_DELAY);
	if (batch->count < n)
		delay = max(delay, UB_RETRY_DELAY);
	return delay;
}

/* Take up to @want pages (order-0 first) off the balloon into @batch. */
static void ub_take_pages_locked(struct ub_batch *batch, unsigned long want)
{
	unsigned int order = ub.ops->huge_order;
	struct page *page, *next;
	LIST_HEAD(list);

	if (ub_small_pages() || !ub.huge_count) {
		ub_batch_init(batch, 0);
		balloon_page_list_dequeue(&ub.pages, &list,
					  min_t(unsigned long, want,
						ub.ops->batch_max));
		list_for_each_entry_safe(page, next, &list, lru) {
			list_del(&page->lru);
			ub_batch_add(batch, page);
		}
		return;
	}
	ub_batch_init(batch, order);
	want = min_t(unsigned long, DIV_ROUND_UP(want, 1UL << order),
		     ub.ops->batch_max);
	list_for_each_entry_safe(page, next, &ub.huge, lru) {
		if (batch->count == want)
			break;
		list_del(&page->lru);
		ub.huge_count--;
		ub_batch_add(batch, page);
	}
}

static void ub_put_back(struct page *page, unsigned int order)
{
	if (order) {
		list_add(&page->lru, &ub.huge);
		ub.huge_count++;
	} else {
		balloon_page_enqueue(&ub.pages, page);
	}
}

/*
 * Give up to @want pages back to the guest, telling the host first; pages
 * the host would not release stay in the balloon. With @force (the device
 * is going away) pages are released even if the host could not be told.
 * Returns the number of pages released.
 */
static unsigned long ub_deflate_locked(unsigned long want, bool force)
{
	struct ub_batch *batch = &ub.batch;
	unsigned long released = 0;
	unsigned int i, order;
	bool keep_all = false;
	ktime_t start;
	int err;

	ub_take_pages_locked(batch, want);
	if (!batch->count)
		return 0;
	order = batch->order;

	start = ktime_get();
	err = ub.ops->deflate(ub.priv, batch);
	if (batch->has_target)
		ub_host_target_locked(batch->target, false);
	if (err && err != -ECONNRESET) {
		ub_backend_error("deflate", err);
		/* The host must hear first: keep the pages. */
		keep_all = !force && (ub.features & UB_FEAT_TELL_HOST);
	}
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
			__free_pages(page, order);
		} else {
			put_page(page);
		}
		released++;
	}
	released <<= order;
	ub.size -= released;
	ub_report_size_locked();
	ub_count(UB_STAT_DEFLATED, ub_pages_to_bytes(released));
	trace_deflate(released >> order, order,
		      ktime_to_ns(ktime_sub(ktime_get(), start)));
	if (err == -ECONNRESET)
		ub_host_reset_locked();
	return released;
}

static unsigned long ub_deflate_step_locked(unsigned long want)
{
	ktime_t start = ktime_get();
	unsigned long got;

	want = min_t(unsigned long, want,
		     ub_rate_batch(ub.set.deflate_rate,
				   ub.ops->batch_max << ub.ops->huge_order));
	got = ub_deflate_locked(want, false);
	if (!got)
		return ub.pages.isolated_pages ? UB_ISOLATED_RETRY :
						 UB_RETRY_DELAY;
	return ub_rate_delay(&ub.deflate_next, ub.set.deflate_rate,
			     ub_pages_to_bytes(got), start);
}

/*
 * Decide whether the floor holds the balloon where it is. Only a change of
 * state is an event; the cap itself follows MemAvailable quietly.
 */
static unsigned long ub_apply_floor_locked(unsigned long want)
{
	unsigned long allow = ub_floor_allowance();
	unsigned long old;
	enum ub_reason why;

	if (allow >= want) {
		if (ub.floor_held) {
			old = ub_target_locked(&why);
			ub.floor_held = false;
			ub_requested_locked(&why);
			ub_note_target_locked(old, why);
		}
		return want;
	}
	if (!ub.floor_held) {
		old = ub_target_locked(&why);
		ub.floor_held = true;
		ub.floor_cap = ub.size + allow;
		ub_count(UB_STAT_FLOOR_HOLDS, 1);
		ub_note_target_locked(old, UB_REASON_FLOOR);
	}
	ub.floor_cap = ub.size + allow;
	return allow;
}

/* One step towards the target; returns the delay before the next one. */
static unsigned long ub_step_locked(void)
{
	unsigned long requested;
	enum ub_reason why;

	if (!ub.ops || ub.paused)
		return UB_IDLE;
	if (ub.need_reset)
		ub_host_reset_locked();
	if (ub.need_restart) {
		ub_restart_locked();
		if (ub.need_restart)
			return UB_RETRY_DELAY;
	}

	requested = ub_requested_locked(&why);
	if (requested > ub.size) {
		unsigned long want = ub_apply_floor_locked(requested - ub.size);

		if (!want)
			return UB_FLOOR_RECHECK;
		return ub_inflate_step_locked(want);
	}
	if (ub.floor_held) {
		unsigned long old = ub_target_locked(&why);

		ub.floor_held = false;
		ub_note_target_locked(old, why);
	}
	ub_release_refused_locked();
	if (requested < ub.size)
		return ub_deflate_step_locked(ub.size - requested);
	return UB_IDLE;
}

/* Hosts that do not signal: ask for the target every poll_interval. */
static void ub_poll_fn(struct work_struct *work)
{
	unsigned long target;
	int err;

	mutex_lock(&ub.lock);
	if (!ub.ops || ub.paused) {
		mutex_unlock(&ub.lock);
		return;
	}
	if (ub.need_restart)
		ub_restart_locked();
	err = ub.need_restart ? 0 : ub.ops->poll(ub.priv, &target);
	if (err == -ECONNRESET)
		ub_host_reset_locked();
	else if (err)
		ub_backend_error("poll", err);
	else if (!ub.need_restart)
		ub_host_target_locked(target, false);
	queue_delayed_work(ub.wq, &ub.poll_work, ub.ops->poll_interval);
	mutex_unlock(&ub.lock);
	ub_kick();
}

static void ub_work_fn(struct work_struct *work)
{
	unsigned long delay;

	mutex_lock(&ub.lock);
	delay = ub_step_locked();
	mutex_unlock(&ub.lock);
	if (delay != UB_IDLE)
		queue_delayed_work(ub.wq, &ub.work, delay);
}

#ifdef CONFIG_BALLOON_COMPACTION
/* One page to the host (@take) or back from it; 0 if the host agreed. */
static int ub_migrate_exchange(struct page *page, bool take)
{
	struct ub_batch *batch = &ub.batch;
	int err;

	ub_batch_init(batch, 0);
	ub_batch_add(batch, page);
	err = take ? ub.ops->inflate(ub.priv, batch) :
		     ub.ops->deflate(ub.priv, batch);
	if (err == -ECONNRESET) {
		/* the reset waits for this page to be back: the worker acts */
		ub.need_reset = true;
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
	unsigned long flags;
	bool taken;

	/* The worker may be allocating, and allocation may compact. */
	if (!mutex_trylock(&ub.lock))
		return -EAGAIN;
	if (!ub.ops || ub.paused)
		goto again;
	if (ub.ops->migrate_release_first) {
		if (ub_migrate_exchange(page, false))
			goto again;
		taken = !ub_migrate_exchange(newpage, true);
	} else {
		if (ub_migrate_exchange(newpage, true))
			goto again;
		taken = true;
		/* if this fails the host holds both: nothing to undo */
		ub_migrate_exchange(page, false);
	}

	if (taken) {
		get_page(newpage);	/* the balloon's reference */
		if (page_zone(page) != page_zone(newpage)) {
			ub_page_returns(page, 0);
			ub_page_leaves(newpage, 0);
		}
	} else {
		ub_page_returns(page, 0);
		ub.size--;
		ub_report_size_locked();
		ub_count(UB_STAT_DEFLATED, PAGE_SIZE);
		ub_kick();
	}
	spin_lock_irqsave(&pages->pages_lock, flags);
	if (taken) {
		balloon_page_insert(pages, newpage);
		__count_vm_event(BALLOON_MIGRATE);
	} else {
		__count_vm_event(BALLOON_DEFLATE);
	}
	pages->isolated_pages--;
	spin_unlock_irqrestore(&pages->pages_lock, flags);
	ub_count(UB_STAT_MIGRATIONS, 1);
	mutex_unlock(&ub.lock);

	balloon_page_finalize(page);
	put_page(page);		/* drop the balloon's reference */
	return MIGRATEPAGE_SUCCESS;

again:
	mutex_unlock(&ub.lock);
	return -EAGAIN;
}
#endif

int ub_attach(const struct ub_backend_ops *ops, void *priv,
	      unsigned long features)
{
	if (WARN_ON(ops->batch_max < 1 || ops->batch_max > UB_BATCH_MAX))
		return -EINVAL;

	mutex_lock(&ub.lock);
	if (ub.ops) {
		mutex_unlock(&ub.lock);
		return -EBUSY;
	}
	balloon_devinfo_init(&ub.pages);
#ifdef CONFIG_BALLOON_COMPACTION
	ub.pages.migratepage = ub_migratepage;
	features |= UB_FEAT_MIGRATION;
#endif
	ub.ops = ops;
	ub.priv = priv;
	ub.features = features;
	ub.paused = false;
	ub.need_reset = false;
	ub.need_restart = false;
	ub.huge_off = false;
	ub.huge_count = 0;
	ub.size = 0;
	ub.host_target = 0;
	ub.user_override = false;
	ub.oom_capped = false;
	ub.floor_held = false;
	ub.set.oom_deflate = !!(features & UB_FEAT_OOM_DEFLATE);
	mutex_unlock(&ub.lock);
	if (ops->poll)
		queue_delayed_work(ub.wq, &ub.poll_work, 0);
	pr_info("backend %s active\n", ops->name);
	return 0;
}

/* Stop the worker for good: paused state is checked by every entry point. */
static void ub_stop_worker(void)
{
	mutex_lock(&ub.lock);
	ub.paused = true;
	mutex_unlock(&ub.lock);
	cancel_delayed_work_sync(&ub.poll_work);
	cancel_delayed_work_sync(&ub.work);
}

/*
 * Return every page to the guest, telling the host first, then forget the
 * backend. Called while the device still works (rmmod, device removal).
 */
void ub_detach(void)
{
	ub_stop_worker();

	mutex_lock(&ub.lock);
	ub_release_refused_locked();
	/* some hosts drop every page themselves when told we are leaving */
	if (ub.ops->shutdown && !ub.ops->shutdown(ub.priv))
		ub_drop_all_locked();
	while (ub.size) {
		if (ub_deflate_locked(ub.size, true))
			continue;
		/* only pages in the middle of a migration are left */
		mutex_unlock(&ub.lock);
		schedule_timeout_uninterruptible(1);
		mutex_lock(&ub.lock);
	}
	pr_info("backend %s detached, all pages returned\n", ub.ops->name);
	ub.ops = NULL;
	ub.priv = NULL;
	ub.features = 0;
	mutex_unlock(&ub.lock);
}

void ub_pause(void)
{
	ub_stop_worker();
}

void ub_resume(void)
{
	mutex_lock(&ub.lock);
	ub.paused = false;
	if (ub.ops && ub.ops->poll)
		queue_delayed_work(ub.wq, &ub.poll_work, 0);
	mutex_unlock(&ub.lock);
	ub_kick();
}

void ub_set_host_target(unsigned long pages)
{
	mutex_lock(&ub.lock);
	ub_host_target_locked(pages, true);
	mutex_unlock(&ub.lock);
	ub_kick();
}

/*
 * The user sets (@override) or clears the guest override. Either is a new
 * request, so it also lifts an OOM cap.
 */
static int ub_user_request(bool override, u64 bytes)
{
	unsigned long old;
	enum ub_reason why;
	int err = 0;

	mutex_lock(&ub.lock);
	if (!ub.ops)
		err = -ENODEV;
	else if (override && bytes > ub_pages_to_bytes(ub_guest_pages()))
		err = -ERANGE;
	else if (override || ub.user_override) {
		old = ub_target_locked(&why);
		ub.user_override = override;
		ub.user_target = override ? bytes >> PAGE_SHIFT : 0;
		ub.oom_capped = false;
		ub_count(UB_STAT_TARGET_CHANGES, 1);
		ub_note_target_locked(old, override ? UB_REASON_USER :
						      UB_REASON_HOST);
	}
	mutex_unlock(&ub.lock);
	if (!err)
		ub_kick();
	return err;
}

int ub_set_user_target(u64 bytes)
{
	return ub_user_request(true, bytes);
}

int ub_clear_user_target(void)
{
	return ub_user_request(false, 0);
}

int ub_set_floor(u64 bytes)
{
	if (bytes > ub_pages_to_bytes(ub_guest_pages()))
		return -ERANGE;
	mutex_lock(&ub.lock);
	ub.set.floor = bytes;
	mutex_unlock(&ub.lock);
	ub_kick();
	return 0;
}

int ub_set_rates(u64 inflate, u64 deflate)
{
	/* below a page per second the balloon would never move */
	if ((inflate && inflate < PAGE_SIZE) || (deflate && deflate < PAGE_SIZE))
		return -ERANGE;
	mutex_lock(&ub.lock);
	ub.set.inflate_rate = inflate;
	ub.set.deflate_rate = deflate;
	mutex_unlock(&ub.lock);
	ub_kick();
	return 0;
}

int ub_set_oom_deflate(bool on, u64 size)
{
	if (size < PAGE_SIZE || size > ub_pages_to_bytes(ub_guest_pages()))
		return -ERANGE;
	mutex_lock(&ub.lock);
	if (on && ub.ops && !(ub.features & UB_FEAT_OOM_DEFLATE)) {
		/* the host did not allow it (virtio: no DEFLATE_ON_OOM) */
		mutex_unlock(&ub.lock);
		return -EPERM;
	}
	ub.set.oom_deflate = on;
	ub.set.oom_deflate_size = size;
	mutex_unlock(&ub.lock);
	return 0;
}

void ub_get_settings(struct ub_settings *set)
{
	mutex_lock(&ub.lock);
	*set = ub.set;
	mutex_unlock(&ub.lock);
}

void ub_snapshot(struct ub_snapshot *snap)
{
	mutex_lock(&ub.lock);
	snap->backend = ub.ops ? ub.ops->name : "none";
	snap->features = ub.features;
	snap->size = ub.size;
	snap->host_target = ub.host_target;
	snap->target = ub_target_locked(&snap->target_source);
	snap->user_override = ub.user_override;
	snap->oom_capped = ub.oom_capped;
	snap->floor_held = ub.floor_held;
	snap->isolated = ub.ops ? ub.pages.isolated_pages : 0;
	mutex_unlock(&ub.lock);
}

int ub_backend_debugfs_show(struct seq_file *m)
{
	int ret = 0;

	mutex_lock(&ub.lock);
	if (ub.ops && ub.ops->debugfs_show)
		ret = ub.ops->debugfs_show(ub.priv, m);
	else
		seq_puts(m, "no backend active\n");
	mutex_unlock(&ub.lock);
	return ret;
}

/*
 * Emergency deflation, for the OOM notifier and for reclaim pressure: give
 * back up to @want pages and keep the balloon from refilling until the host
 * or the user asks again. @may_sleep_on_lock is false in reclaim, where the
 * worker may hold the lock while it allocates.
 */
static unsigned long ub_emergency_deflate(unsigned long want,
					  bool may_sleep_on_lock)
{
	unsigned long freed = 0, old;
	enum ub_reason why;

	if (may_sleep_on_lock)
		mutex_lock(&ub.lock);
	else if (!mutex_trylock(&ub.lock))
		return 0;
	if (!ub.ops || ub.paused || !ub.set.oom_deflate ||
	    !(ub.features & UB_FEAT_OOM_DEFLATE))
		goto out;

	old = ub_target_locked(&why);
	want = min(want, ub.size);
	while (freed < want) {
		unsigned long got = ub_deflate_locked(want - freed, false);

		if (!got)
			break;
		freed += got;
	}
	if (freed) {
		ub.oom_capped = true;
		ub.oom_cap = ub.size;
		ub_count(UB_STAT_OOM_DEFLATIONS, 1);
		ub_count(UB_STAT_OOM_DEFLATED, ub_pages_to_bytes(freed));
		trace_oom_deflate(freed, ub_pages_to_bytes(ub.size));
		ub_note_target_locked(old, UB_REASON_OOM);
	}
out:
	mutex_unlock(&ub.lock);
	return freed;
}

/* The OOM killer is about to pick a victim: release oom_deflate_size. */
unsigned long ub_oom_deflate(void)
{
	return ub_emergency_deflate(READ_ONCE(ub.set.oom_deflate_size) >>
				    PAGE_SHIFT, true);
}

/*
 * Reclaim pressure: below this much MemAvailable (the floor, or one
 * oom_deflate_size if larger) the guest would rather have the balloon's
 * pages than thrash its page cache until the OOM killer runs.
 */
static bool ub_under_pressure(void)
{
	u64 threshold = max(READ_ONCE(ub.set.floor),
			    READ_ONCE(ub.set.oom_deflate_size));

	return si_mem_available() < (long)(threshold >> PAGE_SHIFT);
}

/* Shrinker count: balloon pages we would release now, or 0. */
unsigned long ub_pressure_count(void)
{
	if (!READ_ONCE(ub.set.oom_deflate) ||
	    !(READ_ONCE(ub.features) & UB_FEAT_OOM_DEFLATE) ||
	    !ub_under_pressure())
		return 0;
	return READ_ONCE(ub.size);
}

/*
 * Shrinker scan: release oom_deflate_size at once (or what reclaim asks, if
 * more), so that a process in need waits for a few host round trips, not
 * for hundreds of small reclaim passes.
 */
unsigned long ub_pressure_deflate(unsigned long nr)
{
	unsigned long chunk = READ_ONCE(ub.set.oom_deflate_size) >> PAGE_SHIFT;

	if (!ub_under_pressure())
		return 0;
	return ub_emergency_deflate(max(nr, chunk), false);
}

int ub_engine_init(void)
{
	int i;

	mutex_init(&ub.lock);
	INIT_LIST_HEAD(&ub.refused);
	INIT_LIST_HEAD(&ub.huge);
	INIT_DELAYED_WORK(&ub.work, ub_work_fn);
	INIT_DELAYED_WORK(&ub.poll_work, ub_poll_fn);
	for (i = 0; i < UB_STAT_NR; i++)
		atomic64_set(&ub.stats[i], 0);
	ub.set.oom_deflate_size = UB_DEFAULT_OOM_DEFLATE_SIZE;
	/* freezable: no protocol traffic while the guest suspends */
	ub.wq = alloc_workqueue("uniballoon", WQ_FREEZABLE | WQ_MEM_RECLAIM, 1);
	return ub.wq ? 0 : -ENOMEM;
}

void ub_engine_exit(void)
{
	destroy_workqueue(ub.wq);
	ub.wq = NULL;
}
