/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Inside the engine: the balloon's state, shared by engine.c (the worker,
 * settings, attach), policy.c (the target in force: the only writer of the
 * host, user, OOM and floor fields), pages.c (taking and returning pages)
 * and oom.c (giving memory back under pressure). Everything here is under
 * ub.lock unless it says so.
 */
#ifndef UB_ENGINE_H
#define UB_ENGINE_H

#include <linux/atomic.h>
#include <linux/ktime.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/sizes.h>
#include <linux/workqueue.h>

#include "uniballoon.h"

/* After an allocation failure or a host error, try again this much later. */
#define UB_RETRY_DELAY		(HZ / 5)
/* While the floor holds, look at MemAvailable again this often. */
#define UB_FLOOR_RECHECK	HZ
/* Pages in migration cannot be dequeued; they come back very soon. */
#define UB_ISOLATED_RETRY	(HZ / 50)
#define UB_IDLE			ULONG_MAX
/* Refused pages held aside at most (4 MiB): more go back to the guest. */
#define UB_REFUSED_MAX		(SZ_4M >> PAGE_SHIFT)
/* Host resets in a row wait up to this long before the next exchange. */
#define UB_RESET_BACKOFF_MAX	(30 * HZ)
/* Target-driven backends: look at the size this often while it moves... */
#define UB_TARGET_STEP		(HZ / 10)
/* ...and only once a second if it has not moved for this long. */
#define UB_TARGET_SETTLE	(2 * HZ)

struct uniballoon {
	/*
	 * protects the host exchange, the page lists and all state below;
	 * never held while pages are allocated (the worker fills
	 * inflate_batch first), so deflation, OOM and writers wait at most
	 * for one host exchange
	 */
	struct mutex lock;
	struct balloon_dev_info pages;
	/* pages the host refused this cycle: kept so we don't take them again */
	struct list_head refused;
	unsigned long refused_count;	/* pages, at most about UB_REFUSED_MAX */
	/* pages of the backend's huge_order (not movable), and how many */
	struct list_head huge;
	unsigned long huge_count;
	/* huge allocations failed or were refused: 4 KiB until cycle end */
	bool huge_off;
	bool need_reset;		/* a host reset seen where we could not act */
	bool need_restart;		/* the protocol must be started again */
	unsigned long reset_backoff;	/* jiffies, after resets in a row */
	unsigned long reset_until;	/* no inflation before this */

	const struct ub_backend *ops;		/* attached backend, either kind */
	const struct ub_page_mover *pm;		/* ...if it moves pages */
	const struct ub_size_mover *sm;		/* ...if it sets a size */
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
	bool reserve_hit;		/* inflation met the pressure reserve */

	/* size movers only (ub.sm) */
	unsigned long goal;		/* pages: the last size handed over */
	unsigned long size_moved;	/* jiffies: when the size last changed */
	ktime_t size_seen;		/* when the size was last looked at */

	struct ub_settings set;
	/*
	 * oom_deflate as the user last set it, if ever: set.oom_deflate is
	 * what is in force, which also depends on the host (ub_attach)
	 */
	bool oom_deflate_chosen;
	bool oom_deflate_wanted;
	ktime_t inflate_next;		/* rate limit: earliest next batch */
	ktime_t deflate_next;

	struct ub_batch batch;		/* deflation and migration */
	struct ub_batch inflate_batch;	/* the worker's, filled unlocked */
	struct workqueue_struct *wq;
	struct delayed_work work;
	struct delayed_work poll_work;
	atomic64_t stats[UB_STAT_NR];
};

extern struct uniballoon ub;

static inline void ub_count(enum ub_stat stat, u64 n)
{
	atomic64_add(n, &ub.stats[stat]);
}

/*
 * Ballooned pages leave MemTotal, except when the host lets the guest take
 * them back on OOM: then they still count as the guest's memory, so that
 * overcommit checks let a process ask for what the balloon would release.
 */
static inline bool ub_adjusts_managed(void)
{
	/* a hypervisor's own driver (Xen) always takes its pages out */
	return !(ub.features & UB_FEAT_OOM_DEFLATE) ||
	       (ub.features & UB_FEAT_TARGET_DRIVEN);
}

static inline u64 ub_pages_to_bytes(unsigned long pages)
{
	return (u64)pages << PAGE_SHIFT;
}

/* policy.c: the target in force; the only writer of the policy's fields */
unsigned long ub_requested_locked(enum ub_reason *why);
unsigned long ub_target_locked(enum ub_reason *why);
unsigned long ub_target_racy(enum ub_reason *why);
void ub_note_target_locked(unsigned long old, enum ub_reason cause);
void ub_host_target_locked(unsigned long pages, bool request);
unsigned long ub_apply_floor_locked(unsigned long want);
void ub_floor_release_locked(void);
void ub_reserve_met_locked(void);
void ub_oom_cap_locked(unsigned long left);
void ub_user_request_locked(bool override, unsigned long pages);
void ub_policy_reset_locked(unsigned long host_target);
unsigned long ub_pressure_threshold(void);

/* engine.c */
void ub_kick(void);
unsigned long ub_target_shrink_locked(unsigned long want);

/* pages.c */
void ub_release_refused_locked(bool cycle_end);
void ub_drop_all_locked(void);
void ub_restart_locked(void);
void ub_host_reset_locked(void);
unsigned long ub_inflate_plan_locked(unsigned long want, unsigned int *order,
				     unsigned long *delay);
unsigned long ub_inflate(unsigned long want, unsigned int order);
unsigned long ub_deflate_locked(unsigned long want, bool force);
unsigned long ub_deflate_step_locked(unsigned long want);
#ifdef CONFIG_BALLOON_COMPACTION
int ub_migratepage(struct balloon_dev_info *pages, struct page *newpage,
		   struct page *page, enum migrate_mode mode);
#endif

#endif /* UB_ENGINE_H */
