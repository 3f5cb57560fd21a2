// SPDX-License-Identifier: GPL-2.0
/*
 * The engine: one worker moves the balloon towards the target in force
 * (policy.c), a batch of pages at a time (pages.c) or a step of a size
 * (target.c), within the floor and the rate limits. This file holds the
 * settings and the backend; backends attach, detach and signal here.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/mm.h>
#include <linux/module.h>
#include <linux/workqueue.h>

#include "engine.h"
#include "ub_trace.h"

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

/* ub_size() with no backend attached */
static const unsigned long ub_no_size;

/*
 * The lock and the defaults are there before ub_init() runs: module
 * parameters go through the same setters as the sysfs files (sysfs.c), and
 * the kernel applies them before the module's init.
 */
struct uniballoon ub = {
	.exchange = __MUTEX_INITIALIZER(ub.exchange),
	.lock = __MUTEX_INITIALIZER(ub.lock),
	.size = &ub_no_size,
	.set.oom_deflate_size = UB_DEFAULT_OOM_DEFLATE_SIZE,
};

void ub_exchange_lock(void)
{
	mutex_lock(&ub.exchange);
}

void ub_exchange_unlock(void)
{
	mutex_unlock(&ub.exchange);
}

bool ub_exchange_trylock(void)
{
	return mutex_trylock(&ub.exchange);
}

void ub_assert_exchange_locked(void)
{
	lockdep_assert_held(&ub.exchange);
}

void ub_lock(void)
{
	mutex_lock(&ub.lock);
}

void ub_unlock(void)
{
	mutex_unlock(&ub.lock);
}

bool ub_trylock(void)
{
	return mutex_trylock(&ub.lock);
}

void ub_assert_locked(void)
{
	lockdep_assert_held(&ub.lock);
}

static const char *const ub_block_names[] = {
	[UB_BLOCK_NONE]		= "none",
	[UB_BLOCK_HOST_SILENT]	= "host-silent",
	[UB_BLOCK_HOST_REFUSING] = "host-refusing",
	[UB_BLOCK_HOST_ERROR]	= "host-error",
	[UB_BLOCK_HOST_RESET]	= "host-reset",
	[UB_BLOCK_FLOOR]	= "floor",
	[UB_BLOCK_RESERVE]	= "reserve",
	[UB_BLOCK_RATE]		= "rate",
	[UB_BLOCK_MEMORY]	= "memory",
};

const char *ub_block_name(enum ub_block why)
{
	return ub_block_names[why];
}

/*
 * The worker's step found the balloon held back by @why for @delay
 * jiffies (UB_BLOCK_NONE: it moves, or is at its target). Each retry that
 * waits is traced, and the return to none: backoff bounds the count.
 */
void ub_blocked_locked(enum ub_block why, unsigned long delay)
{
	ub_assert_locked();

	if (why != UB_BLOCK_NONE || ub.blocked != UB_BLOCK_NONE)
		trace_blocked(ub_block_names[why],
			      delay == UB_IDLE ? 0 : jiffies_to_msecs(delay));
	WRITE_ONCE(ub.blocked, why);
}

/*
 * The mover in charge writes its size under ub.lock; readers without the
 * lock accept a value from before or after a change.
 */
unsigned long ub_size(void)
{
	return READ_ONCE(*READ_ONCE(ub.size));
}

void ub_size_owner_locked(const unsigned long *size)
{
	ub_assert_locked();
	WRITE_ONCE(ub.size, size);
}

void ub_count(enum ub_stat stat, u64 n)
{
	atomic64_add(n, &ub.stats[stat]);
}

/* A backend's or the engine's failed exchange: counted and traced. */
void ub_backend_error(const char *event, int err)
{
	const struct ub_backend *ops = READ_ONCE(ub.ops);

	ub_count(UB_STAT_HOST_ERRORS, 1);
	trace_backend(ops ? ops->name : "none", event, err);
}

unsigned long ub_features(void)
{
	return READ_ONCE(ub.features);
}

bool ub_adjusts_managed(void)
{
	return !(ub.features & UB_FEAT_OOM_DEFLATE) ||
	       (ub.features & UB_FEAT_TARGET_DRIVEN);
}

bool ub_paused_locked(void)
{
	ub_assert_locked();
	return ub.paused;
}

bool ub_active_locked(void)
{
	ub_assert_locked();
	return ub.ops && !ub.paused;
}

u64 ub_stat_read(enum ub_stat stat)
{
	return atomic64_read(&ub.stats[stat]);
}

/*
 * The attached backend is a page mover (pages.c), not a size mover: only
 * a size mover's attach sets UB_FEAT_TARGET_DRIVEN. With a backend
 * attached.
 */
static bool ub_moves_pages_locked(void)
{
	ub_assert_locked();
	return !(ub.features & UB_FEAT_TARGET_DRIVEN);
}

/*
 * What the worker does after a step: inflate @want pages of @order (taken
 * with ub.lock dropped), or nothing if @want is 0.
 */
struct ub_plan {
	unsigned long want;
	unsigned int order;
};

/*
 * One step towards the target; returns the delay before the next one, or
 * fills in @plan for an inflation batch the worker allocates unlocked.
 */
static unsigned long ub_step_locked(struct ub_plan *plan)
{
	unsigned long requested, delay;
	enum ub_reason why;

	ub_assert_exchange_locked();
	ub_assert_locked();

	if (!ub.ops || ub.paused)
		return UB_IDLE;
	if (!ub_moves_pages_locked())
		return ub_target_step_locked();
	if (!ub_pages_ready_locked())
		return UB_RETRY_DELAY;

	requested = ub_requested_locked(&why);
	if (requested > ub_size()) {
		unsigned long want = ub_apply_floor_locked(requested - ub_size());

		if (!want) {
			ub_blocked_locked(UB_BLOCK_FLOOR, UB_FLOOR_RECHECK);
			return UB_FLOOR_RECHECK;
		}
		plan->want = ub_inflate_plan_locked(want, &plan->order, &delay);
		return plan->want ? 0 : delay;
	}
	ub_floor_release_locked();
	ub_release_refused_locked(true);
	if (requested < ub_size())
		return ub_deflate_step_locked(ub_size() - requested);
	if (ub.blocked != UB_BLOCK_NONE)
		ub_blocked_locked(UB_BLOCK_NONE, UB_IDLE);
	return UB_IDLE;
}

/* Hosts that do not signal: ask for the target every poll_interval. */
static void ub_poll_fn(struct work_struct *work)
{
	unsigned long target;
	int err;

	ub_exchange_lock();
	ub_lock();
	if (!ub.ops || ub.paused) {
		ub_unlock();
		ub_exchange_unlock();
		return;
	}
	/* a page mover's protocol must be up to be asked */
	if (ub_moves_pages_locked() && !ub_pages_ready_locked())
		goto again;
	err = ub.ops->poll(ub.priv, &target);
	if (err == -ECONNRESET && ub_moves_pages_locked())
		ub_host_reset_locked();
	else if (err)
		ub_backend_error("poll", err);
	else
		ub_host_target_locked(target, false);
again:
	queue_delayed_work(ub.wq, &ub.poll_work, ub.ops->poll_interval);
	ub_unlock();
	ub_exchange_unlock();
	ub_kick();
}

static void ub_work_fn(struct work_struct *work)
{
	struct ub_plan plan = {};
	unsigned long delay;

	ub_exchange_lock();
	ub_lock();
	delay = ub_step_locked(&plan);
	ub_unlock();
	ub_exchange_unlock();
	if (plan.want)
		delay = ub_inflate(plan.want, plan.order);
	if (delay != UB_IDLE)
		queue_delayed_work(ub.wq, &ub.work, delay);
}

#ifdef UB_TEST_BUILD
/* Test builds: the next attach fails, as a backend's start can. */
static bool ub_test_fail_attach;
module_param_named(test_fail_attach, ub_test_fail_attach, bool, 0644);
#endif

/*
 * Attach a backend of either kind (@pm or @sm set): the engine starts
 * from an empty balloon, or, for a size mover, from the size its driver
 * has now, which the host is taken to want until it says more. The
 * user's settings and override are kept (policy.c says when not).
 */
static int ub_attach(const struct ub_backend *ops,
		     const struct ub_page_mover *pm,
		     const struct ub_size_mover *sm, void *priv,
		     unsigned long features)
{
	/* a polled host needs an interval; it must name itself */
	if (WARN_ON(!ops->name || (ops->poll && !ops->poll_interval)))
		return -EINVAL;
#ifdef UB_TEST_BUILD
	if (xchg(&ub_test_fail_attach, false))
		return -EIO;
#endif

	ub_lock();
	if (ub.ops) {
		ub_unlock();
		return -EBUSY;
	}
	ub.ops = ops;
	ub.priv = priv;
	ub.paused = false;
	ub.blocked = UB_BLOCK_NONE;
	if (pm)
		features |= ub_pages_attach_locked(pm, priv);
	if (sm) {
		features |= UB_FEAT_TARGET_DRIVEN;
		ub_target_attach_locked(sm, priv);
	}
	ub.features = features;
	/* once, with the size known: it bounds a kept override */
	ub_policy_reset_locked(ub_size());
	/*
	 * The user's choice (sysfs or module parameter) outlives the device,
	 * so that a restore or a replug does not undo it; it applies where
	 * the host allows deflation on OOM. Without a choice: on, except
	 * where a hypervisor driver owns the balloon, since OOM deflation
	 * then means overriding the host's target.
	 */
	ub.set.oom_deflate = (features & UB_FEAT_OOM_DEFLATE) &&
			     (ub.oom_deflate_chosen ? ub.oom_deflate_wanted : !!pm);
	ub_unlock();
	if (ops->poll)
		queue_delayed_work(ub.wq, &ub.poll_work, 0);
	pr_info("backend %s active\n", ops->name);
	return 0;
}

/* A page mover needs both exchanges and a batch size the engine allows. */
int ub_attach_pages(const struct ub_page_mover *pm, void *priv,
		    unsigned long features)
{
	if (WARN_ON(!pm->inflate || !pm->deflate || pm->batch_max < 1 ||
		    pm->batch_max > UB_BATCH_MAX))
		return -EINVAL;
	return ub_attach(&pm->base, pm, NULL, priv, features);
}

/* A size mover needs to set the size and to read it back. */
int ub_attach_size(const struct ub_size_mover *sm, void *priv,
		   unsigned long features)
{
	if (WARN_ON(!sm->set_size || !sm->get_size))
		return -EINVAL;
	return ub_attach(&sm->base, NULL, sm, priv, features);
}

/* Stop the worker for good: paused state is checked by every entry point. */
static void ub_stop_worker(void)
{
	ub_lock();
	ub.paused = true;
	ub_unlock();
	cancel_delayed_work_sync(&ub.poll_work);
	cancel_delayed_work_sync(&ub.work);
}

/*
 * Return every page to the guest, telling the host first, then forget the
 * backend. Called while the device still works (rmmod, device removal).
 */
void ub_detach(void)
{
	unsigned long kept = 0;

	ub_stop_worker();

	ub_exchange_lock();
	ub_lock();
	if (!ub.ops) {
		/* never attached, or already detached (a failed restore) */
		ub_unlock();
		ub_exchange_unlock();
		return;
	}
	if (ub.features & UB_FEAT_TARGET_DRIVEN) {
		/* the driver keeps its pages: the backend hands it back */
		if (ub.ops->shutdown)
			ub.ops->shutdown(ub.priv);
		ub_target_detach_locked();
	} else {
		ub_release_refused_locked(true);
		/* some hosts drop every page themselves when told we leave */
		if (ub.ops->shutdown && !ub.ops->shutdown(ub.priv))
			ub_drop_all_locked();
		kept = ub_pages_drain_locked();
	}
	if (kept)
		pr_warn("backend %s detached, %lu pages (%lu KiB) kept allocated for good: the host never answered the requests that hold them\n",
			ub.ops->name, kept, kept << (PAGE_SHIFT - 10));
	else
		pr_info("backend %s detached, %s\n", ub.ops->name,
			ub.features & UB_FEAT_TARGET_DRIVEN ?
			"its driver keeps the balloon" : "all pages returned");
	if (!(ub.features & UB_FEAT_TARGET_DRIVEN))
		ub_pages_detach_locked();
	WRITE_ONCE(ub.size, &ub_no_size);
	ub.ops = NULL;
	ub.priv = NULL;
	ub.features = 0;
	ub_unlock();
	ub_exchange_unlock();
}

void ub_pause(void)
{
	ub_stop_worker();
}

void ub_resume(void)
{
	ub_lock();
	ub.paused = false;
	if (ub.ops && ub.ops->poll)
		queue_delayed_work(ub.wq, &ub.poll_work, 0);
	ub_unlock();
	ub_kick();
}

void ub_kick(void)
{
	if (ub.wq)
		mod_delayed_work(ub.wq, &ub.work, 0);
}

/* A backend learned that the host's target changed: poll now. */
void ub_poll_now(void)
{
	if (ub.wq)
		mod_delayed_work(ub.wq, &ub.poll_work, 0);
}

void ub_set_host_target(unsigned long pages)
{
	ub_lock();
	ub_host_target_locked(pages, true);
	ub_unlock();
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

	ub_lock();
	if (!ub.ops)
		err = -ENODEV;
	else if (override && bytes > ub_pages_to_bytes(ub_guest_pages()))
		err = -ERANGE;
	else if (override || ub_user_override_locked()) {
		old = ub_target_locked(&why);
		ub_user_request_locked(override, bytes >> PAGE_SHIFT);
		ub_count(UB_STAT_TARGET_CHANGES, 1);
		ub_note_target_locked(old, override ? UB_REASON_USER :
						      UB_REASON_HOST);
	}
	ub_unlock();
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
	ub_lock();
	ub.set.floor = bytes;
	ub_unlock();
	ub_kick();
	return 0;
}

/* Each setter changes its own field under the lock, never a sibling's. */
int ub_set_rate(bool inflate, u64 rate)
{
	/* below a page per second the balloon would never move */
	if (rate && rate < PAGE_SIZE)
		return -ERANGE;
	ub_lock();
	if (inflate)
		ub.set.inflate_rate = rate;
	else
		ub.set.deflate_rate = rate;
	ub_unlock();
	ub_kick();
	return 0;
}

int ub_set_oom_deflate(bool on)
{
	int err = 0;

	ub_lock();
	if (on && ub.ops && !(ub.features & UB_FEAT_OOM_DEFLATE)) {
		/* the host did not allow it (virtio: no DEFLATE_ON_OOM) */
		err = -EPERM;
	} else {
		/* with no backend yet, the choice waits for one (ub_attach) */
		ub.oom_deflate_chosen = true;
		ub.oom_deflate_wanted = on;
		ub.set.oom_deflate = on;
	}
	ub_unlock();
	return err;
}

int ub_set_oom_deflate_size(u64 size)
{
	if (size < PAGE_SIZE || size > ub_pages_to_bytes(ub_guest_pages()))
		return -ERANGE;
	ub_lock();
	ub.set.oom_deflate_size = size;
	ub_unlock();
	return 0;
}

/*
 * Readers of sysfs and debugfs never wait for ub.lock: monitoring must
 * answer whatever the engine is doing. Each field is read once, without the lock; a read that
 * races with a change may show some fields from before it and some from
 * after.
 */
void ub_get_settings(struct ub_settings *set)
{
	set->floor = READ_ONCE(ub.set.floor);
	set->inflate_rate = READ_ONCE(ub.set.inflate_rate);
	set->deflate_rate = READ_ONCE(ub.set.deflate_rate);
	set->oom_deflate_size = READ_ONCE(ub.set.oom_deflate_size);
	set->oom_deflate = READ_ONCE(ub.set.oom_deflate);
}

void ub_snapshot(struct ub_snapshot *snap)
{
	const struct ub_backend *ops = READ_ONCE(ub.ops);

	snap->backend = ops ? ops->name : "none";
	snap->features = READ_ONCE(ub.features);
	snap->size = ub_size();
	snap->blocked = READ_ONCE(ub.blocked);
	ub_policy_snapshot(snap);
	ub_pages_snapshot(snap);
}

int ub_backend_debugfs_show(struct seq_file *m)
{
	int ret = 0;

	/* ub.lock keeps the backend attached; an exchange may be in flight */
	ub_lock();
	if (ub.ops && ub.ops->debugfs_show)
		ret = ub.ops->debugfs_show(ub.priv, m);
	else
		seq_puts(m, "no backend active\n");
	ub_unlock();
	return ret;
}

int ub_engine_init(void)
{
	int i;

	INIT_DELAYED_WORK(&ub.work, ub_work_fn);
	INIT_DELAYED_WORK(&ub.poll_work, ub_poll_fn);
	for (i = 0; i < UB_STAT_NR; i++)
		atomic64_set(&ub.stats[i], 0);
	/* freezable: no protocol traffic while the guest suspends */
	ub.wq = alloc_workqueue("uniballoon",
				WQ_FREEZABLE | WQ_MEM_RECLAIM | WQ_PERCPU, 1);
	return ub.wq ? 0 : -ENOMEM;
}

void ub_engine_exit(void)
{
	destroy_workqueue(ub.wq);
	ub.wq = NULL;
}
