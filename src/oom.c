// SPDX-License-Identifier: GPL-2.0
/*
 * Giving memory back when the guest needs it, if oom_deflate allows it:
 *
 * - the OOM notifier: before the OOM killer picks a victim, the kernel asks
 *   its notifiers to free memory; if the balloon gives pages back, nobody
 *   dies;
 * - a shrinker: under reclaim pressure with MemAvailable below the threshold
 *   (ub_pressure_threshold(), policy.c), the balloon releases pages before
 *   the guest thrashes its page cache, which can keep the OOM killer from
 *   ever being reached.
 *
 * The threshold and the pressure reserve are policy.c's; this file only
 * gives pages back, through pages.c or size_mover.c.
 */
#include <linux/mm.h>
#include <linux/notifier.h>
#include <linux/oom.h>
#include <linux/shrinker.h>

#include "engine.h"
#include "ub_trace.h"

/*
 * The OOM notifier runs with oom_lock held and every allocation that hit
 * OOM waiting, the shrinker in kswapd or a task's direct reclaim: each call
 * waits this long at most for the engine's locks, and each exchange this
 * long for a host that does not answer (after one timeout, none is sent).
 */
#define UB_EMERGENCY_WAIT	HZ

/*
 * Take a lock with @trylock (ub_trylock() or ub_exchange_trylock()) by
 * @deadline (jiffies), or give up. Polled, not slept on, so that the bound
 * holds whatever the holder does.
 */
static bool ub_mutex_by(bool (*trylock)(void), unsigned long deadline)
{
	while (!trylock()) {
		if (time_after(jiffies, deadline))
			return false;
		schedule_timeout_uninterruptible(1);
	}
	return true;
}

/*
 * engine.exchange for an emergency, or false. It is waited for (by @deadline)
 * only where its holder cannot be waiting for a host: a page mover whose
 * exchanges never time out (no settle(): VMware's commands return with
 * the host's answer), and only where the caller may sleep on a lock.
 * Elsewhere it is only tried: the worker may hold it while a host stalls,
 * and the pages then go back untold where the host need not hear first.
 */
static bool ub_exchange_by(unsigned long deadline, bool may_sleep_on_lock)
{
	bool settles;

	if (!ub_pages_peek(&settles))
		return false;
	if (may_sleep_on_lock && !settles)
		return ub_mutex_by(ub_exchange_trylock, deadline);
	return ub_exchange_trylock();
}

/*
 * Emergency deflation, for the OOM notifier and for reclaim pressure: give
 * back up to @want pages and keep the balloon from refilling until the host
 * or the user asks again, waiting UB_EMERGENCY_WAIT at most for the locks
 * (never for engine.exchange where its holder may wait for a host) and for
 * each exchange. @may_sleep_on_lock is false in reclaim, where the locks
 * are only tried: reclaim runs often, and its caller may hold what a
 * lock's holder needs. Returns the pages the guest has back now: a size
 * mover's balloon (Xen) only lowers the size, and its driver repopulates
 * later, so that counts as none to the OOM killer and to reclaim, which
 * would otherwise stand down for memory that is not there yet.
 */
static unsigned long ub_emergency_deflate(unsigned long want,
					  bool may_sleep_on_lock)
{
	unsigned long deadline = jiffies + UB_EMERGENCY_WAIT;
	unsigned long freed = 0, left = 0, old;
	struct ub_settings set;
	enum ub_reason why;
	bool exchange;

	/* engine.exchange before engine.lock, as everywhere */
	exchange = ub_exchange_by(deadline, may_sleep_on_lock);
	if (may_sleep_on_lock ? !ub_mutex_by(ub_trylock, deadline) :
				!ub_trylock()) {
		if (exchange)
			ub_exchange_unlock();
		return 0;
	}
	ub_get_settings(&set);
	if (!ub_active_locked() || !set.oom_deflate ||
	    !(ub_features() & UB_FEAT_OOM_DEFLATE))
		goto out;

	/* pages the host refused this cycle are the guest's: free them first */
	ub_release_refused_locked(false);
	old = ub_target_locked(&why);
	want = min(want, ub_size());
	if (ub_features() & UB_FEAT_SIZE_MOVER) {
		/* the hypervisor's driver takes the pages back from the host */
		freed = ub_size_mover_shrink_locked(want, &left);
	}
	/*
	 * Each exchange waits UB_EMERGENCY_WAIT at most; after one times
	 * out the host owes an answer and the rest go back untold, with no
	 * wait: in all, one bound per call. Without engine.exchange (another
	 * exchange is in flight) nothing waits for the host: the pages go
	 * back untold where it need not hear first, else none.
	 */
	while (freed < want && !(ub_features() & UB_FEAT_SIZE_MOVER)) {
		unsigned long got = exchange ?
			ub_deflate_locked(want - freed, false,
					  UB_EMERGENCY_WAIT) :
			ub_deflate_untold_locked(want - freed);

		if (!got)
			break;
		freed += got;
		left = ub_size();
	}
	if (freed) {
		ub_oom_cap_locked(left);
		ub_count(UB_STAT_OOM_DEFLATIONS, 1);
		ub_count(UB_STAT_OOM_DEFLATED, ub_pages_to_bytes(freed));
		trace_oom_deflate(freed, ub_pages_to_bytes(left));
		ub_note_target_locked(old, UB_REASON_OOM);
	}
	if (ub_features() & UB_FEAT_SIZE_MOVER)
		freed = 0;
out:
	ub_unlock();
	if (exchange)
		ub_exchange_unlock();
	return freed;
}

/* The OOM killer is about to pick a victim: release oom_deflate_size. */
static unsigned long ub_oom_deflate(void)
{
	struct ub_settings set;

	ub_get_settings(&set);
	return ub_emergency_deflate(set.oom_deflate_size >> PAGE_SHIFT, true);
}

/* Pages to release to get back above the threshold with room, or 0. */
static unsigned long ub_pressure_deficit(void)
{
	unsigned long threshold = ub_pressure_threshold();
	long available = si_mem_available();

	if (available >= (long)threshold)
		return 0;
	return 2 * threshold - max(available, 0L);
}

/*
 * Shrinker count: balloon pages we would release now, or 0. A size mover's
 * balloon (Xen) frees nothing in the scan itself (its driver gives the
 * pages back later) and cuts once until they are back: it counts what one
 * cut would promise, and nothing while a cut is pending.
 */
static unsigned long ub_pressure_count(void)
{
	unsigned long deficit = ub_pressure_deficit();
	unsigned long size = ub_size();
	struct ub_settings set;

	ub_get_settings(&set);
	if (!set.oom_deflate ||
	    !(ub_features() & UB_FEAT_OOM_DEFLATE) || !deficit)
		return 0;
	if (!(ub_features() & UB_FEAT_SIZE_MOVER))
		return size;
	if (ub_size_mover_cut_pending())
		return 0;
	return min(size, max(deficit, set.oom_deflate_size >> PAGE_SHIFT));
}

/*
 * Shrinker scan: release enough to bring MemAvailable to twice the
 * threshold (at least oom_deflate_size, or what reclaim asks if more), so
 * that a process in need waits for a few host round trips, not for hundreds
 * of small reclaim passes.
 */
static unsigned long ub_pressure_deflate(unsigned long nr)
{
	unsigned long chunk, deficit;
	struct ub_settings set;

	ub_get_settings(&set);
	chunk = set.oom_deflate_size >> PAGE_SHIFT;
	deficit = ub_pressure_deficit();

	if (!deficit)
		return 0;
	return ub_emergency_deflate(max3(nr, chunk, deficit), false);
}

/*
 * What the OOM notifier told the OOM killer, for debugfs: a non-zero
 * report makes the kernel skip the kill, so it must be memory the guest
 * has now (not a Xen target the driver has yet to repopulate).
 */
static atomic_long_t ub_oom_calls = ATOMIC_LONG_INIT(0);
static atomic_long_t ub_oom_reported = ATOMIC_LONG_INIT(0);

void ub_oom_notifier_stats(unsigned long *calls, unsigned long *reported)
{
	*calls = atomic_long_read(&ub_oom_calls);
	*reported = atomic_long_read(&ub_oom_reported);
}

static int ub_oom_notify(struct notifier_block *nb, unsigned long unused,
			 void *parm)
{
	unsigned long *freed = parm;
	unsigned long got = ub_oom_deflate();

	atomic_long_inc(&ub_oom_calls);
	atomic_long_add(got, &ub_oom_reported);
	*freed += got;
	return NOTIFY_OK;
}

static struct notifier_block ub_oom_nb = {
	.notifier_call = ub_oom_notify,
};

static unsigned long ub_shrink_count(struct shrinker *shrinker,
				     struct shrink_control *sc)
{
	return ub_pressure_count();
}

static unsigned long ub_shrink_scan(struct shrinker *shrinker,
				    struct shrink_control *sc)
{
	return ub_pressure_deflate(sc->nr_to_scan) ?: SHRINK_STOP;
}

/*
 * Reclaim scales a shrinker's count down by its priority (count >> 12 * 4 /
 * seeks at first) and skips the call while that is below a batch of 128:
 * with the default seeks, a 250 MiB balloon (64000 pages) comes to 31 at
 * the first priority, so it is not asked until reclaim has failed at a few
 * priorities, i.e. after the guest's page cache (its programs) is gone.
 * The count is non-zero only below the pressure threshold, so seeks 0
 * ("trim aggressively": half the count) is what we mean: every reclaim
 * pass below the threshold asks the balloon.
 */
#define UB_SHRINKER_SEEKS	0

static struct shrinker *ub_shrinker;

static int ub_shrinker_register(void)
{
	ub_shrinker = shrinker_alloc(0, "uniballoon");
	if (!ub_shrinker)
		return -ENOMEM;
	ub_shrinker->count_objects = ub_shrink_count;
	ub_shrinker->scan_objects = ub_shrink_scan;
	ub_shrinker->seeks = UB_SHRINKER_SEEKS;
	shrinker_register(ub_shrinker);
	return 0;
}

static void ub_shrinker_unregister(void)
{
	shrinker_free(ub_shrinker);
}

int ub_oom_init(void)
{
	int err = register_oom_notifier(&ub_oom_nb);

	if (err)
		return err;
	err = ub_shrinker_register();
	if (err)
		unregister_oom_notifier(&ub_oom_nb);
	return err;
}

void ub_oom_exit(void)
{
	ub_shrinker_unregister();
	unregister_oom_notifier(&ub_oom_nb);
}
