// SPDX-License-Identifier: GPL-2.0
/*
 * Driving a size mover (Xen): the hypervisor's own balloon driver moves
 * the pages; we hand it the next size in force, a rate step at a time and
 * within the floor, and account for the size it reaches. The worker
 * (engine.c) calls a step; OOM deflation (oom.c) lowers the size at once.
 * All under engine.lock.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/jiffies.h>
#include <linux/ktime.h>
#include <linux/math64.h>

#include "engine.h"
#include "ub_trace.h"

/* Look at the size this often while it moves... */
#define UB_TARGET_STEP		(HZ / 10)
/* ...and only once a second if it has not moved for this long. */
#define UB_TARGET_SETTLE	(2 * HZ)

/* The size mover, the size handed over and how it moves; under engine.lock. */
static struct ub_target_state {
	const struct ub_size_mover *sm;	/* from attach to detach, else NULL */
	void *priv;			/* the backend's argument */
	unsigned long size;		/* pages: the size the driver reached */
	unsigned long goal;		/* pages: the last size handed over */
	unsigned long size_moved;	/* jiffies: when the size last changed */
	ktime_t size_seen;		/* when the size was last looked at */
} tgt;

/* A size mover attached: the balloon is what its driver holds now. */
void ub_target_attach_locked(const struct ub_size_mover *sm, void *priv)
{
	ub_assert_locked();

	tgt.sm = sm;
	tgt.priv = priv;
	tgt.size = tgt.sm->get_size(tgt.priv);
	ub_size_owner_locked(&tgt.size);
	tgt.goal = tgt.size;
	tgt.size_moved = jiffies;
	tgt.size_seen = ktime_get();
}

/*
 * The backend is gone, and its driver keeps the balloon: ours is empty,
 * and none of the backend's operations is called again.
 */
void ub_target_detach_locked(void)
{
	ub_assert_locked();

	tgt.size = 0;
	tgt.sm = NULL;
	tgt.priv = NULL;
}

/*
 * Target-driven backends: the size is whatever the hypervisor's driver has
 * reached. Inflate and deflate are traced and counted as they are seen, so
 * the tracepoints add up to the real change, whoever asked for it.
 */
static void ub_sync_size_locked(void)
{
	unsigned long now = tgt.sm->get_size(tgt.priv);
	ktime_t seen = ktime_get();
	u64 ns = ktime_to_ns(ktime_sub(seen, tgt.size_seen));
	unsigned long delta;

	ub_assert_locked();

	tgt.size_seen = seen;
	if (now == tgt.size)
		return;
	tgt.size_moved = jiffies;
	if (now > tgt.size) {
		delta = now - tgt.size;
		ub_count(UB_STAT_INFLATED, ub_pages_to_bytes(delta));
		trace_inflate(min_t(unsigned long, delta, U32_MAX), 0, ns);
	} else {
		delta = tgt.size - now;
		ub_count(UB_STAT_DEFLATED, ub_pages_to_bytes(delta));
		trace_deflate(min_t(unsigned long, delta, U32_MAX), 0, ns);
	}
	tgt.size = now;
}

/* The most a rate allows per target step, in pages; ULONG_MAX if unlimited. */
static unsigned long ub_target_rate_step(u64 rate)
{
	if (!rate)
		return ULONG_MAX;
	return max_t(u64, div_u64(rate, HZ / UB_TARGET_STEP) >> PAGE_SHIFT, 1);
}

static int ub_set_goal_locked(unsigned long goal)
{
	int err = tgt.sm->set_size(tgt.priv, goal);

	ub_assert_locked();

	if (err)
		ub_backend_error("set_size", err);
	else
		tgt.goal = goal;
	return err;
}

/*
 * One step of a target-driven balloon: the next size in force is at most
 * one rate step from the size the hypervisor's driver has reached, and
 * never past what the floor allows. It is handed over every time, so a
 * target that someone else set in the driver (the in-kernel frontend) is
 * overridden at the next step or poll.
 */
unsigned long ub_target_step_locked(void)
{
	unsigned long requested, goal, step, room, delay = UB_TARGET_STEP;
	struct ub_settings set;
	enum ub_reason why;

	ub_assert_locked();

	ub_get_settings(&set);
	ub_sync_size_locked();
	requested = ub_requested_locked(&why);
	goal = tgt.size;
	if (requested > tgt.size) {
		unsigned long want = ub_apply_floor_locked(requested - tgt.size);

		step = ub_target_rate_step(set.inflate_rate);
		room = ub_reserve_room();
		/* the driver's pages count against the reserve as ours do */
		if (want > room) {
			want = room;
			ub_reserve_met_locked();
		}
		if (!want)
			delay = UB_FLOOR_RECHECK;
		if (want > step)
			ub_count(UB_STAT_RATE_DELAYS, 1);
		goal += min(want, step);
	} else {
		ub_floor_release_locked();
		step = ub_target_rate_step(set.deflate_rate);
		if (tgt.size - requested > step)
			ub_count(UB_STAT_RATE_DELAYS, 1);
		goal -= min(tgt.size - requested, step);
	}
	if (ub_set_goal_locked(goal))
		return UB_RETRY_DELAY;
	if (goal == tgt.size && delay == UB_TARGET_STEP)
		return UB_IDLE;
	/* the driver retries slowly when Xen has no memory: so do we */
	if (time_after(jiffies, tgt.size_moved + UB_TARGET_SETTLE))
		delay = max_t(unsigned long, delay, HZ);
	return delay;
}

/*
 * True while the driver has yet to give back pages a lower size promised:
 * read without the lock by the shrinker's count, so it may race a step.
 */
bool ub_target_cut_pending(void)
{
	return READ_ONCE(tgt.goal) < READ_ONCE(tgt.size);
}

/*
 * Emergency deflation of a target-driven balloon: lower the size in force
 * by @want at once. The driver repopulates asynchronously: returns how
 * many pages were promised (not yet back), and in *@left the size now in
 * force. While an earlier cut is still coming back it cuts nothing more:
 * reclaim passes and OOM calls in a row would otherwise add up their cuts
 * from a size that lags the driver, down to an empty balloon.
 */
unsigned long ub_target_shrink_locked(unsigned long want, unsigned long *left)
{
	unsigned long base;

	ub_assert_locked();

	ub_sync_size_locked();
	*left = tgt.goal;
	if (tgt.goal < tgt.size)
		return 0;
	base = tgt.size;
	want = min(want, base);
	if (!want || ub_set_goal_locked(base - want))
		want = 0;
	*left = tgt.goal;
	return want;
}
