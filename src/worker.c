// SPDX-License-Identifier: GPL-2.0
/*
 * The worker: one step at a time it moves the balloon towards the target
 * in force (policy.c), a batch of pages at a time (pages.c) or a step of a
 * size (size_mover.c), within the floor and the rate limits. Backends attach
 * and detach here, and the host's and the user's requests come in here.
 * The engine's state is engine.c's: this file reaches it through the
 * functions engine.h declares, and no engine file calls this one.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/mm.h>
#include <linux/module.h>
#include <linux/workqueue.h>

#include "engine.h"

/*
 * The attached backend is a page mover (pages.c), not a size mover
 * (size_mover.c): only a size mover's attach sets UB_FEAT_SIZE_MOVER.
 * With a backend attached.
 */
static bool ub_moves_pages_locked(void)
{
	ub_assert_locked();
	return !(ub_features() & UB_FEAT_SIZE_MOVER);
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

	if (!ub_active_locked())
		return UB_IDLE;
	if (!ub_moves_pages_locked())
		return ub_size_mover_step_locked();
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
	/* the return to none is traced; a step that stays there is not */
	ub_blocked_locked(UB_BLOCK_NONE, UB_IDLE);
	return UB_IDLE;
}

/* Hosts that do not signal: ask for the target every poll_interval. */
static void ub_poll_fn(struct work_struct *work)
{
	const struct ub_backend *ops;
	unsigned long target;
	int err;

	ub_exchange_lock();
	ub_lock();
	if (!ub_active_locked()) {
		ub_unlock();
		ub_exchange_unlock();
		return;
	}
	ops = ub_backend_locked();
	/* a page mover's protocol must be up to be asked */
	if (ub_moves_pages_locked() && !ub_pages_ready_locked())
		goto again;
	err = ops->poll(ub_backend_priv_locked(), &target);
	if (err == -ECONNRESET && ub_moves_pages_locked())
		ub_host_reset_locked();
	else if (err)
		ub_backend_error("poll", err);
	else
		ub_host_target_locked(target, false);
again:
	ub_queue_poll(ops->poll_interval);
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
		ub_queue_step(delay);
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
	int err;

	/* a polled host needs an interval; it must name itself */
	if (WARN_ON(!ops->name || (ops->poll && !ops->poll_interval)))
		return -EINVAL;
#ifdef UB_TEST_BUILD
	if (xchg(&ub_test_fail_attach, false))
		return -EIO;
#endif

	ub_lock();
	err = ub_backend_attach_locked(ops, priv);
	if (err) {
		ub_unlock();
		return err;
	}
	if (pm)
		features |= ub_pages_attach_locked(pm, priv);
	if (sm) {
		features |= UB_FEAT_SIZE_MOVER;
		ub_size_mover_attach_locked(sm, priv);
	}
	ub_features_attach_locked(features);
	/* once, with the size known: it bounds a kept override */
	ub_policy_reset_locked(ub_size());
	/*
	 * Without the user's choice, OOM deflation is on except where a
	 * hypervisor driver owns the balloon, since it then means overriding
	 * the host's target.
	 */
	ub_oom_deflate_attach_locked(!!pm);
	ub_unlock();
	if (ops->poll)
		ub_queue_poll(0);
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

/*
 * Return every page to the guest, telling the host first, then forget the
 * backend. Called while the device still works (rmmod, device removal).
 */
void ub_detach(void)
{
	const struct ub_backend *ops;
	unsigned long kept = 0;
	void *priv;

	/* the worker and the poll stop for good: nothing resumes them */
	ub_pause();

	ub_exchange_lock();
	ub_lock();
	ops = ub_backend_locked();
	if (!ops) {
		/* never attached, or already detached (a failed restore) */
		ub_unlock();
		ub_exchange_unlock();
		return;
	}
	priv = ub_backend_priv_locked();
	if (ub_features() & UB_FEAT_SIZE_MOVER) {
		/* the driver keeps its pages: the backend hands it back */
		if (ops->shutdown)
			ops->shutdown(priv);
		ub_size_mover_detach_locked();
	} else {
		ub_release_refused_locked(true);
		/* some hosts drop every page themselves when told we leave */
		if (ops->shutdown && !ops->shutdown(priv))
			ub_drop_all_locked();
		kept = ub_pages_drain_locked();
	}
	if (kept)
		pr_warn("backend %s detached, %lu pages (%lu KiB) kept allocated for good: the host never answered the requests that hold them\n",
			ops->name, kept, kept << (PAGE_SHIFT - 10));
	else
		pr_info("backend %s detached, %s\n", ops->name,
			ub_features() & UB_FEAT_SIZE_MOVER ?
			"its driver keeps the balloon" : "all pages returned");
	if (!(ub_features() & UB_FEAT_SIZE_MOVER))
		ub_pages_detach_locked();
	ub_backend_detach_locked();
	ub_unlock();
	ub_exchange_unlock();
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
	if (!ub_backend_locked())
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

void ub_snapshot(struct ub_snapshot *snap)
{
	ub_engine_snapshot(snap);
	ub_policy_snapshot(snap);
	ub_pages_snapshot(snap);
}

int ub_engine_init(void)
{
	return ub_engine_setup(ub_work_fn, ub_poll_fn);
}
