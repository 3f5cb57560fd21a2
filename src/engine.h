/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Inside the engine. Each file owns its state and keeps it static:
 *
 *   engine.c  the worker, attach and detach, the settings (struct uniballoon
 *             below: the backend, the size, the settings, the lock)
 *   policy.c  the target in force: host request, override, OOM cap, floor,
 *             pressure reserve
 *   pages.c   a page mover's balloon: its page lists and host exchanges
 *   target.c  a size mover's goal and how it moves
 *   oom.c     giving memory back under pressure and on OOM
 *
 * Calls go one way: engine.c and oom.c call pages.c, target.c and policy.c;
 * pages.c and target.c call policy.c; policy.c calls no other engine file.
 * The state below is engine.c's; the others read it, and the mover in
 * charge (pages.c or target.c) updates the size, all under ub.lock.
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
#define UB_IDLE			ULONG_MAX

struct uniballoon {
	/*
	 * protects the host exchange, every file's engine state and the
	 * fields below; never held while pages are allocated (the worker
	 * fills its batch first), so deflation, OOM and writers wait at most
	 * for one host exchange
	 */
	struct mutex lock;
	const struct ub_backend *ops;		/* attached backend, either kind */
	const struct ub_page_mover *pm;		/* ...if it moves pages */
	const struct ub_size_mover *sm;		/* ...if it sets a size */
	void *priv;
	unsigned long features;
	bool paused;
	unsigned long size;		/* pages the host holds */
	enum ub_block blocked;		/* the worker's last step, for readers */

	struct ub_settings set;
	/*
	 * oom_deflate as the user last set it, if ever: set.oom_deflate is
	 * what is in force, which also depends on the host (ub_attach)
	 */
	bool oom_deflate_chosen;
	bool oom_deflate_wanted;

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
/* Something changed that the worker should act on. */
static inline void ub_kick(void)
{
	if (ub.wq)
		mod_delayed_work(ub.wq, &ub.work, 0);
}

void ub_blocked_locked(enum ub_block why, unsigned long delay);

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

/* policy.c: the target in force; only policy.c reads or writes its state */
unsigned long ub_requested_locked(enum ub_reason *why);
unsigned long ub_target_locked(enum ub_reason *why);
void ub_policy_snapshot(struct ub_snapshot *snap);
bool ub_user_override_locked(void);
void ub_note_target_locked(unsigned long old, enum ub_reason cause);
void ub_host_target_locked(unsigned long pages, bool request);
unsigned long ub_apply_floor_locked(unsigned long want);
void ub_floor_release_locked(void);
void ub_reserve_met_locked(void);
void ub_oom_cap_locked(unsigned long left);
void ub_user_request_locked(bool override, unsigned long pages);
void ub_policy_reset_locked(unsigned long host_target);
unsigned long ub_pressure_threshold(void);
unsigned long ub_reserve_room(void);

/* pages.c: a page mover's balloon */
unsigned long ub_pages_attach_locked(void);
bool ub_pages_ready_locked(void);
void ub_pages_snapshot(struct ub_snapshot *snap);
void ub_release_refused_locked(bool cycle_end);
void ub_drop_all_locked(void);
void ub_host_reset_locked(void);
unsigned long ub_inflate_plan_locked(unsigned long want, unsigned int *order,
				     unsigned long *delay);
unsigned long ub_inflate(unsigned long want, unsigned int order);
unsigned long ub_deflate_locked(unsigned long want, bool force,
				unsigned long timeout);
unsigned long ub_deflate_step_locked(unsigned long want);
unsigned long ub_pages_drain_locked(void);

/* target.c: a size mover's balloon */
void ub_target_attach_locked(void);
unsigned long ub_target_step_locked(void);
unsigned long ub_target_shrink_locked(unsigned long want, unsigned long *left);
bool ub_target_cut_pending(void);

#endif /* UB_ENGINE_H */
