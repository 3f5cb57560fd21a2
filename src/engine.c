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

/**
 * struct uniballoon - the engine's state: the backend, the size, the settings
 * @exchange: protects the host protocol: one exchange at a time. Every
 *	call into a page mover's protocol (@inflate, @deflate, @settle,
 *	@restart, @huge_ready, @poll, @shutdown) is made with it held; taken
 *	before @lock. An exchange that may wait for the host
 *	holds only @exchange while it waits (@lock dropped, see
 *	ub_pages_exchange_locked() in pages.c), and @exchange is never
 *	waited for where a host may be waited for under it (OOM and
 *	pressure deflation, migration only try it).
 * @lock: protects every engine file's state and the fields below; never
 *	held while pages are allocated (the worker fills its batch first) or
 *	while a host is waited for, so deflation, OOM and writers wait for
 *	it at most for bookkeeping. Readers of sysfs and debugfs do not take
 *	it: they read @ops, @features, @size, @blocked and @set once
 *	each with READ_ONCE() and accept a mix of values from before and
 *	after a change.
 * @ops: the attached backend, either kind; NULL if none
 * @priv: the backend's argument to each of its operations
 * @features: UB_FEAT_* of the attached backend, 0 if none
 * @paused: the worker and the poll stop (ub_pause(), and for good in
 *	ub_detach()); OOM deflation and migration leave the balloon alone
 * @size: the size of the attached mover (ub_size()), which that mover
 *	owns and writes (ub_size_owner_locked()); a constant 0 with none
 * @blocked: the worker's last step (ub_blocked_locked()), for readers
 * @set: the settings; set.oom_deflate is what is in force, which also
 *	depends on the host (ub_attach())
 * @oom_deflate_chosen: the user has set oom_deflate (sysfs or module
 *	parameter); the choice outlives the backend
 * @oom_deflate_wanted: with @oom_deflate_chosen, what the user chose
 * @wq: the engine's freezable workqueue; NULL before ub_engine_init() and
 *	after ub_engine_exit()
 * @work: the worker: one step towards the target (ub_kick())
 * @poll_work: asks a polled host for its target (ub_poll_now())
 * @stats: the counters, by enum ub_stat (ub_count(), ub_stat_read())
 *
 * One instance, engine, private to this file: the other engine files reach
 * it only through the functions engine.h declares (ub_exchange_lock(),
 * ub_lock(), ub_size(), ub_features(), ub_count(), ...).
 */
struct uniballoon {
	struct mutex exchange;
	struct mutex lock;
	const struct ub_backend *ops;
	void *priv;
	unsigned long features;
	bool paused;
	const unsigned long *size;
	enum ub_block blocked;

	struct ub_settings set;
	bool oom_deflate_chosen;
	bool oom_deflate_wanted;

	struct workqueue_struct *wq;
	struct delayed_work work;
	struct delayed_work poll_work;
	atomic64_t stats[UB_STAT_NR];
};

/* ub_size() with no backend attached */
static const unsigned long ub_no_size;

/*
 * The lock and the defaults are there before ub_init() runs: module
 * parameters go through the same setters as the sysfs files (sysfs.c), and
 * the kernel applies them before the module's init.
 */
static struct uniballoon engine = {
	.exchange = __MUTEX_INITIALIZER(engine.exchange),
	.lock = __MUTEX_INITIALIZER(engine.lock),
	.size = &ub_no_size,
	.set.oom_deflate_size = UB_DEFAULT_OOM_DEFLATE_SIZE,
};

void ub_exchange_lock(void)
{
	mutex_lock(&engine.exchange);
}

void ub_exchange_unlock(void)
{
	mutex_unlock(&engine.exchange);
}

bool ub_exchange_trylock(void)
{
	return mutex_trylock(&engine.exchange);
}

void ub_assert_exchange_locked(void)
{
	lockdep_assert_held(&engine.exchange);
}

void ub_lock(void)
{
	mutex_lock(&engine.lock);
}

void ub_unlock(void)
{
	mutex_unlock(&engine.lock);
}

bool ub_trylock(void)
{
	return mutex_trylock(&engine.lock);
}

void ub_assert_locked(void)
{
	lockdep_assert_held(&engine.lock);
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

	if (why != UB_BLOCK_NONE || engine.blocked != UB_BLOCK_NONE)
		trace_blocked(ub_block_names[why],
			      delay == UB_IDLE ? 0 : jiffies_to_msecs(delay));
	WRITE_ONCE(engine.blocked, why);
}

/*
 * The mover in charge writes its size under engine.lock; readers without the
 * lock accept a value from before or after a change.
 */
unsigned long ub_size(void)
{
	return READ_ONCE(*READ_ONCE(engine.size));
}

void ub_size_owner_locked(const unsigned long *size)
{
	ub_assert_locked();
	WRITE_ONCE(engine.size, size);
}

void ub_count(enum ub_stat stat, u64 n)
{
	atomic64_add(n, &engine.stats[stat]);
}

/* A backend's or the engine's failed exchange: counted and traced. */
void ub_backend_error(const char *event, int err)
{
	const struct ub_backend *ops = READ_ONCE(engine.ops);

	ub_count(UB_STAT_HOST_ERRORS, 1);
	trace_backend(ops ? ops->name : "none", event, err);
}

unsigned long ub_features(void)
{
	return READ_ONCE(engine.features);
}

bool ub_adjusts_managed(void)
{
	return !(engine.features & UB_FEAT_OOM_DEFLATE) ||
	       (engine.features & UB_FEAT_TARGET_DRIVEN);
}

bool ub_paused_locked(void)
{
	ub_assert_locked();
	return engine.paused;
}

bool ub_active_locked(void)
{
	ub_assert_locked();
	return engine.ops && !engine.paused;
}

u64 ub_stat_read(enum ub_stat stat)
{
	return atomic64_read(&engine.stats[stat]);
}

/*
 * The attached backend is a page mover (pages.c), not a size mover: only
 * a size mover's attach sets UB_FEAT_TARGET_DRIVEN. With a backend
 * attached.
 */
static bool ub_moves_pages_locked(void)
{
	ub_assert_locked();
	return !(engine.features & UB_FEAT_TARGET_DRIVEN);
}

/*
 * What the worker does after a step: inflate @want pages of @order (taken
 * with engine.lock dropped), or nothing if @want is 0.
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

	if (!engine.ops || engine.paused)
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
	if (engine.blocked != UB_BLOCK_NONE)
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
	if (!engine.ops || engine.paused) {
		ub_unlock();
		ub_exchange_unlock();
		return;
	}
	/* a page mover's protocol must be up to be asked */
	if (ub_moves_pages_locked() && !ub_pages_ready_locked())
		goto again;
	err = engine.ops->poll(engine.priv, &target);
	if (err == -ECONNRESET && ub_moves_pages_locked())
		ub_host_reset_locked();
	else if (err)
		ub_backend_error("poll", err);
	else
		ub_host_target_locked(target, false);
again:
	queue_delayed_work(engine.wq, &engine.poll_work, engine.ops->poll_interval);
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
		queue_delayed_work(engine.wq, &engine.work, delay);
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
	if (engine.ops) {
		ub_unlock();
		return -EBUSY;
	}
	engine.ops = ops;
	engine.priv = priv;
	engine.paused = false;
	engine.blocked = UB_BLOCK_NONE;
	if (pm)
		features |= ub_pages_attach_locked(pm, priv);
	if (sm) {
		features |= UB_FEAT_TARGET_DRIVEN;
		ub_target_attach_locked(sm, priv);
	}
	engine.features = features;
	/* once, with the size known: it bounds a kept override */
	ub_policy_reset_locked(ub_size());
	/*
	 * The user's choice (sysfs or module parameter) outlives the device,
	 * so that a restore or a replug does not undo it; it applies where
	 * the host allows deflation on OOM. Without a choice: on, except
	 * where a hypervisor driver owns the balloon, since OOM deflation
	 * then means overriding the host's target.
	 */
	engine.set.oom_deflate = (features & UB_FEAT_OOM_DEFLATE) &&
			     (engine.oom_deflate_chosen ? engine.oom_deflate_wanted : !!pm);
	ub_unlock();
	if (ops->poll)
		queue_delayed_work(engine.wq, &engine.poll_work, 0);
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
	engine.paused = true;
	ub_unlock();
	cancel_delayed_work_sync(&engine.poll_work);
	cancel_delayed_work_sync(&engine.work);
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
	if (!engine.ops) {
		/* never attached, or already detached (a failed restore) */
		ub_unlock();
		ub_exchange_unlock();
		return;
	}
	if (engine.features & UB_FEAT_TARGET_DRIVEN) {
		/* the driver keeps its pages: the backend hands it back */
		if (engine.ops->shutdown)
			engine.ops->shutdown(engine.priv);
		ub_target_detach_locked();
	} else {
		ub_release_refused_locked(true);
		/* some hosts drop every page themselves when told we leave */
		if (engine.ops->shutdown && !engine.ops->shutdown(engine.priv))
			ub_drop_all_locked();
		kept = ub_pages_drain_locked();
	}
	if (kept)
		pr_warn("backend %s detached, %lu pages (%lu KiB) kept allocated for good: the host never answered the requests that hold them\n",
			engine.ops->name, kept, kept << (PAGE_SHIFT - 10));
	else
		pr_info("backend %s detached, %s\n", engine.ops->name,
			engine.features & UB_FEAT_TARGET_DRIVEN ?
			"its driver keeps the balloon" : "all pages returned");
	if (!(engine.features & UB_FEAT_TARGET_DRIVEN))
		ub_pages_detach_locked();
	WRITE_ONCE(engine.size, &ub_no_size);
	engine.ops = NULL;
	engine.priv = NULL;
	engine.features = 0;
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
	engine.paused = false;
	if (engine.ops && engine.ops->poll)
		queue_delayed_work(engine.wq, &engine.poll_work, 0);
	ub_unlock();
	ub_kick();
}

void ub_kick(void)
{
	if (engine.wq)
		mod_delayed_work(engine.wq, &engine.work, 0);
}

/* A backend learned that the host's target changed: poll now. */
void ub_poll_now(void)
{
	if (engine.wq)
		mod_delayed_work(engine.wq, &engine.poll_work, 0);
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
	if (!engine.ops)
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
	engine.set.floor = bytes;
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
		engine.set.inflate_rate = rate;
	else
		engine.set.deflate_rate = rate;
	ub_unlock();
	ub_kick();
	return 0;
}

int ub_set_oom_deflate(bool on)
{
	int err = 0;

	ub_lock();
	if (on && engine.ops && !(engine.features & UB_FEAT_OOM_DEFLATE)) {
		/* the host did not allow it (virtio: no DEFLATE_ON_OOM) */
		err = -EPERM;
	} else {
		/* with no backend yet, the choice waits for one (ub_attach) */
		engine.oom_deflate_chosen = true;
		engine.oom_deflate_wanted = on;
		engine.set.oom_deflate = on;
	}
	ub_unlock();
	return err;
}

int ub_set_oom_deflate_size(u64 size)
{
	if (size < PAGE_SIZE || size > ub_pages_to_bytes(ub_guest_pages()))
		return -ERANGE;
	ub_lock();
	engine.set.oom_deflate_size = size;
	ub_unlock();
	return 0;
}

/*
 * Readers of sysfs and debugfs never wait for engine.lock: monitoring must
 * answer whatever the engine is doing. Each field is read once, without the lock; a read that
 * races with a change may show some fields from before it and some from
 * after.
 */
void ub_get_settings(struct ub_settings *set)
{
	set->floor = READ_ONCE(engine.set.floor);
	set->inflate_rate = READ_ONCE(engine.set.inflate_rate);
	set->deflate_rate = READ_ONCE(engine.set.deflate_rate);
	set->oom_deflate_size = READ_ONCE(engine.set.oom_deflate_size);
	set->oom_deflate = READ_ONCE(engine.set.oom_deflate);
}

void ub_snapshot(struct ub_snapshot *snap)
{
	const struct ub_backend *ops = READ_ONCE(engine.ops);

	snap->backend = ops ? ops->name : "none";
	snap->features = READ_ONCE(engine.features);
	snap->size = ub_size();
	snap->blocked = READ_ONCE(engine.blocked);
	ub_policy_snapshot(snap);
	ub_pages_snapshot(snap);
}

int ub_backend_debugfs_show(struct seq_file *m)
{
	int ret = 0;

	/* engine.lock keeps the backend attached; an exchange may be running */
	ub_lock();
	if (engine.ops && engine.ops->debugfs_show)
		ret = engine.ops->debugfs_show(engine.priv, m);
	else
		seq_puts(m, "no backend active\n");
	ub_unlock();
	return ret;
}

int ub_engine_init(void)
{
	int i;

	INIT_DELAYED_WORK(&engine.work, ub_work_fn);
	INIT_DELAYED_WORK(&engine.poll_work, ub_poll_fn);
	for (i = 0; i < UB_STAT_NR; i++)
		atomic64_set(&engine.stats[i], 0);
	/* freezable: no protocol traffic while the guest suspends */
	engine.wq = alloc_workqueue("uniballoon",
				WQ_FREEZABLE | WQ_MEM_RECLAIM | WQ_PERCPU, 1);
	return engine.wq ? 0 : -ENOMEM;
}

void ub_engine_exit(void)
{
	destroy_workqueue(engine.wq);
	engine.wq = NULL;
}
