// SPDX-License-Identifier: GPL-2.0
/*
 * Driving a size mover (Xen): the hypervisor's own balloon driver moves
 * the pages; we hand it the next size in force, a rate step at a time and
 * within the floor, and account for the size it reaches. The worker
 * (worker.c) calls a step; OOM deflation (oom.c) lowers the size at once.
 * All under engine.lock.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/jiffies.h>
#include <linux/ktime.h>
#include <linux/math64.h>

#include "engine.h"
#include "ub_trace.h"

/* Look at the size this often while it moves... */
#define UB_SIZE_MOVER_STEP	(HZ / 10)
/* ...and only once a second if it has not moved for this long. */
#define UB_SIZE_MOVER_SETTLE	(2 * HZ)

/*
 * The size mover, the size handed over and how it moves; under engine.lock.
 * @sm is only for calls: whether a size mover is attached is told by
 * UB_FEAT_SIZE_MOVER in the engine's features, which readers without the
 * lock and engine.c can see.
 */
static struct ub_size_mover_state {
	const struct ub_size_mover *sm;	/* from attach to detach, else NULL */
	void *priv;			/* the backend's argument */
	unsigned long size;		/* pages: the size the driver reached */
	unsigned long goal;		/* pages: the last size handed over */
	unsigned long size_moved;	/* jiffies: when the size last changed */
	ktime_t size_seen;		/* when the size was last looked at */
} mover;

/* A size mover attached: the balloon is what its driver holds now. */
void ub_size_mover_attach_locked(const struct ub_size_mover *sm, void *priv)
{
	ub_assert_locked();

	mover.sm = sm;
	mover.priv = priv;
	mover.size = mover.sm->get_size(mover.priv);
	ub_size_owner_locked(&mover.size);
	mover.goal = mover.size;
	mover.size_moved = jiffies;
	mover.size_seen = ktime_get();
}

/*
 * The backend is gone, and its driver keeps the balloon: ours is empty,
 * and none of the backend's operations is called again.
 */
void ub_size_mover_detach_locked(void)
{
	ub_assert_locked();

	mover.size = 0;
	mover.sm = NULL;
	mover.priv = NULL;
}

/*
 * A size mover's balloon is whatever size the hypervisor's driver has
 * reached. Inflate and deflate are traced and counted as they are seen, so
 * the tracepoints add up to the real change, whoever asked for it.
 */
static void ub_sync_size_locked(void)
{
	unsigned long now = mover.sm->get_size(mover.priv);
	ktime_t seen = ktime_get();
	u64 ns = ktime_to_ns(ktime_sub(seen, mover.size_seen));
	unsigned long delta;

	ub_assert_locked();

	mover.size_seen = seen;
	if (now == mover.size)
		return;
	mover.size_moved = jiffies;
	if (now > mover.size) {
		delta = now - mover.size;
		ub_count(UB_STAT_INFLATED, ub_pages_to_bytes(delta));
		trace_inflate(min_t(unsigned long, delta, U32_MAX), 0, ns);
	} else {
		delta = mover.size - now;
		ub_count(UB_STAT_DEFLATED, ub_pages_to_bytes(delta));
		trace_deflate(min_t(unsigned long, delta, U32_MAX), 0, ns);
	}
	mover.size = now;
}

/* The most a rate allows per step, in pages; ULONG_MAX if unlimited. */
static unsigned long ub_size_mover_rate_step(u64 rate)
{
	if (!rate)
		return ULONG_MAX;
	return max_t(u64, div_u64(rate, HZ / UB_SIZE_MOVER_STEP) >> PAGE_SHIFT,
		     1);
}

static int ub_set_goal_locked(unsigned long goal)
{
	int err = mover.sm->set_size(mover.priv, goal);

	ub_assert_locked();

	if (err)
		ub_backend_error("set_size", err);
	else
		mover.goal = goal;
	return err;
}

/*
 * One step of a size mover's balloon: the next size in force is at most
 * one rate step from the size the hypervisor's driver has reached, and
 * never past what the floor allows. It is handed over every time, so a
 * size that someone else set in the driver (the in-kernel frontend) is
 * overridden at the next step or poll.
 */
unsigned long ub_size_mover_step_locked(void)
{
	unsigned long requested, goal, step, room, delay = UB_SIZE_MOVER_STEP;
	struct ub_settings set;
	enum ub_reason why;

	ub_assert_locked();

	ub_get_settings(&set);
	ub_sync_size_locked();
	requested = ub_requested_locked(&why);
	goal = mover.size;
	if (requested > mover.size) {
		unsigned long want;

		want = ub_apply_floor_locked(requested - mover.size);
		step = ub_size_mover_rate_step(set.inflate_rate);
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
		step = ub_size_mover_rate_step(set.deflate_rate);
		if (mover.size - requested > step)
			ub_count(UB_STAT_RATE_DELAYS, 1);
		goal -= min(mover.size - requested, step);
	}
	if (ub_set_goal_locked(goal))
		return UB_RETRY_DELAY;
	if (goal == mover.size && delay == UB_SIZE_MOVER_STEP)
		return UB_IDLE;
	/* the driver retries slowly when Xen has no memory: so do we */
	if (time_after(jiffies, mover.size_moved + UB_SIZE_MOVER_SETTLE))
		delay = max_t(unsigned long, delay, HZ);
	return delay;
}

/*
 * True while the driver has yet to give back pages a lower size promised:
 * read without the lock by the shrinker's count, so it may race a step.
 */
bool ub_size_mover_cut_pending(void)
{
	return READ_ONCE(mover.goal) < READ_ONCE(mover.size);
}

/*
 * Emergency deflation of a size mover's balloon: lower the size in force
 * by @want at once. The driver repopulates asynchronously: returns how
 * many pages were promised (not yet back), and in *@left the size now in
 * force. While an earlier cut is still coming back it cuts nothing more:
 * reclaim passes and OOM calls in a row would otherwise add up their cuts
 * from a size that lags the driver, down to an empty balloon.
 */
unsigned long ub_size_mover_shrink_locked(unsigned long want,
					  unsigned long *left)
{
	unsigned long base;

	ub_assert_locked();

	ub_sync_size_locked();
	*left = mover.goal;
	if (mover.goal < mover.size)
		return 0;
	base = mover.size;
	want = min(want, base);
	if (!want || ub_set_goal_locked(base - want))
		want = 0;
	*left = mover.goal;
	return want;
}
