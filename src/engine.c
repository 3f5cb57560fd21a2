// SPDX-License-Identifier: GPL-2.0
/*
 * The engine's state: the attached backend, the settings, the lock, the
 * counters and the worker's queue (struct uniballoon, private to this
 * file). Every other engine file reaches it through the functions below;
 * this file calls none of them (engine.h has the map).
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
 * @poll_work: asks a polled host for its target (ub_poll_now()). A work
 *	of its own because the poll keeps its own clock: it comes every
 *	poll_interval whatever the step does, and the step idles at the
 *	target (UB_IDLE) until a kick, or waits out a floor recheck or a
 *	reset's backoff (up to 30 s). ub_kick(), which each poll, host
 *	request, setting and migration calls, brings the step forward and
 *	leaves the next question to the host where it is. A delayed work
 *	holds one expiry: one work for both would have to keep the other
 *	deadline itself.
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
	       (engine.features & UB_FEAT_SIZE_MOVER);
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

/* Memory the guest would have with an empty balloon. */
unsigned long ub_guest_pages(void)
{
	return totalram_pages() + (ub_adjusts_managed() ? ub_size() : 0);
}

u64 ub_stat_read(enum ub_stat stat)
{
	return atomic64_read(&engine.stats[stat]);
}

/*
 * Stop the worker and the poll (for good in ub_detach()): paused state is
 * checked by every entry point.
 */
void ub_pause(void)
{
	ub_lock();
	engine.paused = true;
	ub_unlock();
	cancel_delayed_work_sync(&engine.poll_work);
	cancel_delayed_work_sync(&engine.work);
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

/* The worker's side (worker.c): the backend, attach and detach, the queues */

const struct ub_backend *ub_backend_locked(void)
{
	ub_assert_locked();
	return engine.ops;
}

void *ub_backend_priv_locked(void)
{
	ub_assert_locked();
	return engine.priv;
}

int ub_backend_attach_locked(const struct ub_backend *ops, void *priv)
{
	ub_assert_locked();

	if (engine.ops)
		return -EBUSY;
	engine.ops = ops;
	engine.priv = priv;
	engine.paused = false;
	engine.blocked = UB_BLOCK_NONE;
	return 0;
}

void ub_features_attach_locked(unsigned long features)
{
	ub_assert_locked();
	engine.features = features;
}

/*
 * The user's choice (sysfs or module parameter) outlives the device, so
 * that a restore or a replug does not undo it; it applies where the host
 * allows deflation on OOM. Without a choice: @by_default.
 */
void ub_oom_deflate_attach_locked(bool by_default)
{
	ub_assert_locked();
	engine.set.oom_deflate = (engine.features & UB_FEAT_OOM_DEFLATE) &&
				 (engine.oom_deflate_chosen ?
				  engine.oom_deflate_wanted : by_default);
}

void ub_backend_detach_locked(void)
{
	ub_assert_exchange_locked();
	ub_assert_locked();
	WRITE_ONCE(engine.size, &ub_no_size);
	engine.ops = NULL;
	engine.priv = NULL;
	engine.features = 0;
}

void ub_queue_step(unsigned long delay)
{
	queue_delayed_work(engine.wq, &engine.work, delay);
}

void ub_queue_poll(unsigned long delay)
{
	queue_delayed_work(engine.wq, &engine.poll_work, delay);
}

void ub_engine_snapshot(struct ub_snapshot *snap)
{
	const struct ub_backend *ops = READ_ONCE(engine.ops);

	snap->backend = ops ? ops->name : "none";
	snap->features = READ_ONCE(engine.features);
	snap->size = ub_size();
	snap->blocked = READ_ONCE(engine.blocked);
}

int ub_engine_setup(work_func_t step, work_func_t poll)
{
	int i;

	INIT_DELAYED_WORK(&engine.work, step);
	INIT_DELAYED_WORK(&engine.poll_work, poll);
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
