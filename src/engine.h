/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Inside the engine. Each file owns its state and keeps it static:
 *
 *   engine.c      the engine's state (struct uniballoon engine): the
 *                 attached backend, the settings, the lock, the counters,
 *                 the queue
 *   policy.c      the target in force: host request, override, OOM cap,
 *                 floor, pressure threshold and reserve
 *   pages.c       a page mover's balloon: its backend, size, page lists
 *                 and host exchanges
 *   size_mover.c  a size mover's balloon: its backend, size and goal
 *   worker.c      the worker's step and the poll, attach and detach, the
 *                 host's and the user's requests, the snapshot
 *   oom.c         giving memory back under pressure and on OOM
 *
 * Calls go one way, down this list, never up or in a circle:
 *
 *   worker.c, oom.c  call pages.c, size_mover.c, policy.c and engine.c
 *   pages.c, size_mover.c  call policy.c and engine.c (not each other)
 *   policy.c  calls engine.c
 *   engine.c  calls no other engine file
 *
 * engine.c's state is reached only through the functions below (ub_lock(),
 * ub_size(), ub_features(), ub_get_settings(), ...); worker.c hands
 * engine.c its work functions at init (ub_engine_setup()) rather than
 * engine.c calling up. The mover in charge owns the balloon's size, and
 * tells engine.c where it is (ub_size_owner_locked()) so that the other
 * files read it through ub_size().
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
/* A step's delay that means no next step: the worker waits for a kick. */
#define UB_IDLE			ULONG_MAX

/**
 * ub_exchange_lock() - take the engine's exchange lock
 *
 * The exchange lock serialises the host protocol: one exchange at a time
 * (struct uniballoon's @exchange, in engine.c, says what it covers). It is
 * taken before the engine's lock (ub_lock()), never after it.
 *
 * Context: Process context, without the engine's lock; may sleep (its
 * holder may wait for a host up to the host's deadline).
 */
void ub_exchange_lock(void);

/**
 * ub_exchange_unlock() - release the engine's exchange lock
 *
 * Context: Caller holds the exchange lock (ub_exchange_lock() or
 * ub_exchange_trylock()), and has released the engine's lock if it took
 * it after this one.
 */
void ub_exchange_unlock(void);

/**
 * ub_exchange_trylock() - take the engine's exchange lock if it is free
 *
 * For callers that must not wait for a host: page migration, and OOM and
 * pressure deflation where the lock's holder may be waiting for a host.
 *
 * Context: Process context, without the engine's lock; does not sleep.
 * Return: true if the exchange lock is now held.
 */
bool ub_exchange_trylock(void);

/**
 * ub_assert_exchange_locked() - check that the caller holds the exchange lock
 *
 * Every function named *_locked that needs the exchange lock calls it,
 * beside ub_assert_locked(): a lockdep warning where the rule is broken.
 *
 * Context: Any context; does nothing without lockdep.
 */
void ub_assert_exchange_locked(void);

/**
 * ub_lock() - take the engine's lock
 *
 * The lock protects the state of every engine file (struct uniballoon's
 * @lock says what it covers); it is never held while a host is waited
 * for. Taken after the exchange lock (ub_exchange_lock()) where both are
 * needed.
 *
 * Context: Process context; may sleep (its holders do bookkeeping only).
 */
void ub_lock(void);

/**
 * ub_unlock() - release the engine's lock
 *
 * Context: Caller holds the lock (ub_lock() or ub_trylock()).
 */
void ub_unlock(void);

/**
 * ub_trylock() - take the engine's lock if it is free
 *
 * For callers that must not wait on it: page migration (the worker may be
 * allocating, and allocation may compact) and OOM and pressure deflation.
 *
 * Context: Process context; does not sleep.
 * Return: true if the lock is now held.
 */
bool ub_trylock(void);

/**
 * ub_assert_locked() - check that the caller holds the engine's lock
 *
 * Every function named *_locked calls it: a lockdep warning where the
 * rule is broken.
 *
 * Context: Any context; does nothing without lockdep.
 */
void ub_assert_locked(void);

/**
 * ub_size() - the balloon's size
 *
 * A page mover's taken pages, those of unanswered requests included; a
 * size mover's size its driver reached; 0 with no backend. The mover in
 * charge (pages.c or size_mover.c) changes it, under the engine's lock.
 *
 * Context: Any context; takes no lock. Without the lock the value may be
 * from before or after a change.
 * Return: pages.
 */
unsigned long ub_size(void);

/**
 * ub_size_owner_locked() - a mover attached: where its size is kept
 * @size: the mover's own size, which it writes under engine.lock
 *
 * ub_size() reads it from now until the backend detaches. The page mover
 * (ub_pages_attach_locked()) and the size mover
 * (ub_size_mover_attach_locked()) call it when they attach.
 *
 * Context: Caller holds engine.lock.
 */
void ub_size_owner_locked(const unsigned long *size);

/**
 * ub_count() - add to a counter
 * @stat: which one
 * @n: how much, in the counter's unit (bytes or events, enum ub_stat)
 *
 * Context: Any context; atomic, takes no lock.
 */
void ub_count(enum ub_stat stat, u64 n);

/**
 * ub_kick() - something changed that the worker should act on
 *
 * Runs the worker's next step now instead of after its delay. Does nothing
 * before ub_engine_init() and after ub_engine_exit().
 *
 * Context: Any context; takes no lock (callers may hold engine.lock).
 */
void ub_kick(void);

/**
 * ub_blocked_locked() - record why the worker's step left the balloon
 * @why: what holds it back; UB_BLOCK_NONE: it moves, or is at its target
 * @delay: jiffies until the next try, or UB_IDLE
 *
 * Sets engine.blocked for readers and traces balloon:blocked, except for a
 * step that stays at none: each retry that waits is traced, and the return
 * to none.
 *
 * Context: Caller holds engine.lock; does not sleep.
 */
void ub_blocked_locked(enum ub_block why, unsigned long delay);

/**
 * ub_adjusts_managed() - whether ballooned pages leave MemTotal
 *
 * Ballooned pages leave MemTotal (the managed page count), except when the
 * host lets the guest take them back on OOM: then they still count as the
 * guest's memory, so that overcommit checks let a process ask for what the
 * balloon would release. A hypervisor's own driver (Xen) always takes its
 * pages out.
 *
 * Context: Any context; reads the features without engine.lock.
 * Return: true if the balloon's pages are out of the managed page count.
 */
bool ub_adjusts_managed(void);

/**
 * ub_features() - what the attached backend supports
 *
 * Context: Any context; takes no lock. Without the engine's lock the value
 * may be from before or after an attach or a detach.
 * Return: UB_FEAT_* of the attached backend, 0 if none.
 */
unsigned long ub_features(void);

/**
 * ub_paused_locked() - whether the worker and the poll are stopped
 *
 * ub_pause() stops them until ub_resume(), ub_detach() for good.
 *
 * Context: Caller holds engine.lock.
 * Return: true while paused.
 */
bool ub_paused_locked(void);

/**
 * ub_active_locked() - whether a backend is attached and not paused
 *
 * OOM deflation and page migration leave the balloon alone otherwise.
 *
 * Context: Caller holds engine.lock.
 * Return: true if the balloon may move now.
 */
bool ub_active_locked(void);

/**
 * ub_backend_locked() - the attached backend
 *
 * For the worker (worker.c): its @poll, @shutdown and @name.
 *
 * Context: Caller holds engine.lock.
 * Return: the backend's common operations, either kind; NULL if none.
 */
const struct ub_backend *ub_backend_locked(void);

/**
 * ub_backend_priv_locked() - the attached backend's argument
 *
 * Context: Caller holds engine.lock.
 * Return: the @priv the backend attached with; NULL if none.
 */
void *ub_backend_priv_locked(void);

/**
 * ub_backend_attach_locked() - record a backend that attaches
 * @ops: its common operations
 * @priv: its argument to each of them
 *
 * The worker and the poll are no longer paused and the balloon is not
 * blocked. The caller then attaches the mover (pages.c or size_mover.c) and
 * sets the features (ub_features_attach_locked()).
 *
 * Context: Caller holds engine.lock.
 * Return: 0, or -EBUSY if a backend is attached already.
 */
int ub_backend_attach_locked(const struct ub_backend *ops, void *priv);

/**
 * ub_features_attach_locked() - the attached backend's features
 * @features: UB_FEAT_* of the backend and its mover
 *
 * Context: Caller holds engine.lock.
 */
void ub_features_attach_locked(unsigned long features);

/**
 * ub_oom_deflate_attach_locked() - put oom_deflate in force at attach
 * @by_default: what is in force when the user has not chosen
 *
 * The user's choice (sysfs or module parameter) outlives the backend; it,
 * or @by_default, is in force only where the features allow OOM deflation
 * (UB_FEAT_OOM_DEFLATE). Call after ub_features_attach_locked().
 *
 * Context: Caller holds engine.lock.
 */
void ub_oom_deflate_attach_locked(bool by_default);

/**
 * ub_backend_detach_locked() - forget the backend that detached
 *
 * No backend, no features, and ub_size() is 0. The mover has let its
 * backend go first (ub_pages_detach_locked(), ub_size_mover_detach_locked()).
 *
 * Context: Caller holds engine.exchange and engine.lock, with the worker
 * stopped (ub_pause()).
 */
void ub_backend_detach_locked(void);

/**
 * ub_queue_step() - run the worker's next step after a delay
 * @delay: jiffies
 *
 * An earlier queued step stays where it is (queue_delayed_work()); ub_kick()
 * moves it to now.
 *
 * Context: Any context; takes no lock.
 */
void ub_queue_step(unsigned long delay);

/**
 * ub_queue_poll() - ask a polled host for its target after a delay
 * @delay: jiffies
 *
 * Context: Any context; takes no lock.
 */
void ub_queue_poll(unsigned long delay);

/**
 * ub_engine_snapshot() - the engine's part of a snapshot, without the lock
 * @snap: its backend, features, size and blocked are filled in, each read
 *	once
 *
 * Context: Any context; takes no lock, does not sleep.
 */
void ub_engine_snapshot(struct ub_snapshot *snap);

/**
 * ub_engine_setup() - set the engine's queue up, at module init
 * @step: the worker's step (worker.c), run by ub_kick() and ub_queue_step()
 * @poll: the poll of a polled host, run by ub_poll_now() and
 *	ub_queue_poll()
 *
 * Zeroes the counters and allocates the freezable workqueue.
 *
 * Context: Module init; may sleep.
 * Return: 0, or -ENOMEM.
 */
int ub_engine_setup(work_func_t step, work_func_t poll);

/**
 * ub_pages_to_bytes() - convert a page count to bytes
 * @pages: pages of PAGE_SIZE
 *
 * Context: Any context.
 * Return: @pages * PAGE_SIZE, in 64 bits.
 */
static inline u64 ub_pages_to_bytes(unsigned long pages)
{
	return (u64)pages << PAGE_SHIFT;
}

/* policy.c: the target in force; only policy.c reads or writes its state */

/**
 * ub_requested_locked() - the target before the floor
 * @why: set to what decided it
 *
 * The user's override if set, else the host's target; then capped by an
 * OOM deflation's cap.
 *
 * Context: Caller holds engine.lock; does not sleep.
 * Return: pages.
 */
unsigned long ub_requested_locked(enum ub_reason *why);

/**
 * ub_target_locked() - the target in force
 * @why: set to what decided it
 *
 * ub_requested_locked(), then capped where the floor holds the balloon.
 *
 * Context: Caller holds engine.lock; does not sleep.
 * Return: pages.
 */
unsigned long ub_target_locked(enum ub_reason *why);

/**
 * ub_policy_snapshot() - the policy's part of a snapshot, without engine.lock
 * @snap: its host_target, target, target_source, user_override,
 *	oom_capped, floor_held and reserve_hit are filled in
 *
 * The same decision the worker makes, from fields that may race a change.
 *
 * Context: Any context; takes no lock, does not sleep.
 */
void ub_policy_snapshot(struct ub_snapshot *snap);

/**
 * ub_user_override_locked() - whether the user's target is set
 *
 * Context: Caller holds engine.lock.
 * Return: true while the user's override is in force.
 */
bool ub_user_override_locked(void);

/**
 * ub_note_target_locked() - trace the target in force if it moved
 * @old: the target in force before a change of state, in pages
 * @cause: what changed, for the balloon:target tracepoint
 *
 * Context: Caller holds engine.lock; does not sleep.
 */
void ub_note_target_locked(unsigned long old, enum ub_reason cause);

/**
 * ub_host_target_locked() - record the host's target
 * @pages: the target, in pages
 * @request: the host asked (a notification such as virtio's config
 *	change); false: we learned it (a poll, or the answer to a command)
 *
 * A change is counted in UB_STAT_TARGET_CHANGES, and the target in force
 * traced if it moves. Without the
 * user's override, a request, a repeated one too, ends an OOM cap: the
 * host saw the deflation in the balloon's size and asks again. A learned
 * target ends it only when it changes, or the balloon would refill a
 * second after OOM. The caller kicks the worker.
 *
 * Context: Caller holds engine.lock; does not sleep.
 */
void ub_host_target_locked(unsigned long pages, bool request);

/**
 * ub_apply_floor_locked() - how much of an inflation the floor allows
 * @want: pages inflation would take
 *
 * The floor in force is the floor setting and, once inflation has met the
 * pressure reserve (ub_reserve_met_locked()), at least that reserve; a
 * floor of 0 sets no limit; a step allowed whole ends a reserve hold. The
 * hold starts (counted in UB_STAT_FLOOR_HOLDS and traced) when
 * MemAvailable above the floor is less than @want, and ends when it is
 * enough again; meanwhile the cap follows MemAvailable quietly.
 *
 * Context: Caller holds engine.lock; does not sleep.
 * Return: pages inflation may take now, at most @want.
 */
unsigned long ub_apply_floor_locked(unsigned long want);

/**
 * ub_floor_release_locked() - the balloon is not growing: end a floor hold
 *
 * For a step at or above the requested size: the floor and the pressure
 * reserve stop holding it, and the target in force is traced if it moves.
 *
 * Context: Caller holds engine.lock; does not sleep.
 */
void ub_floor_release_locked(void);

/**
 * ub_reserve_met_locked() - inflation met the pressure reserve
 *
 * The reserve then holds the balloon as a floor (ub_apply_floor_locked())
 * until the floor allows a whole step again or a floor hold is released
 * (ub_floor_release_locked()).
 *
 * Context: Caller holds engine.lock.
 */
void ub_reserve_met_locked(void);

/**
 * ub_oom_cap_locked() - hold the balloon after an OOM deflation
 * @left: the balloon's size after the deflation, in pages
 *
 * The target in force stays at most @left until the host or the user asks
 * again (ub_host_target_locked(), ub_user_request_locked()).
 *
 * Context: Caller holds engine.lock.
 */
void ub_oom_cap_locked(unsigned long left);

/**
 * ub_user_request_locked() - set or clear the user's override
 * @override: true to set it, false to clear it
 * @pages: with @override, the user's target in pages
 *
 * A new request: it also lifts an OOM cap. The caller counts and traces
 * the change.
 *
 * Context: Caller holds engine.lock.
 */
void ub_user_request_locked(bool override, unsigned long pages);

/**
 * ub_policy_reset_locked() - a backend attached: start the policy afresh
 * @host_target: pages the host is taken to want until it says more
 *
 * No OOM cap, floor hold or reserve hold. The user's override stays: it is
 * the user's, not the device's, and a restore after sleep or a replugged
 * device should not undo it; it goes (with a warning) only if it is now
 * more than the guest's memory. Call once the size is known (ub_size()).
 *
 * Context: Caller holds engine.lock.
 */
void ub_policy_reset_locked(unsigned long host_target);

/**
 * ub_pressure_threshold() - MemAvailable below which reclaim deflates
 *
 * The floor, one oom_deflate_size, or 1024 * sqrt(guest bytes), whichever
 * is largest: 32 MiB for a 1 GiB guest, 256 MiB for 64 GiB. Read without
 * engine.lock.
 *
 * Context: Any context; takes no lock.
 * Return: pages.
 */
unsigned long ub_pressure_threshold(void);

/**
 * ub_reserve_room() - what inflation may take before the pressure reserve
 *
 * MemAvailable above ub_pressure_reserve(); each page the balloon takes
 * lowers MemAvailable by about one page, so a batch is sized to this.
 *
 * Context: Any context; takes no lock.
 * Return: pages; ULONG_MAX when there is no reserve (OOM deflation off).
 */
unsigned long ub_reserve_room(void);

/* pages.c: a page mover's balloon */

/**
 * ub_pages_attach_locked() - a page mover attached: an empty balloon
 * @pm: the backend's operations, which pages.c calls until
 *	ub_pages_detach_locked()
 * @priv: the backend's argument to each of them
 *
 * Sets up the page lists and forgets the pages a previous detach had to
 * keep; the protocol is taken to be just started.
 *
 * Context: Caller holds engine.lock.
 * Return: the features the balloon adds: UB_FEAT_MIGRATION where balloon
 * pages can migrate (CONFIG_BALLOON_MIGRATION), else 0.
 */
unsigned long ub_pages_attach_locked(const struct ub_page_mover *pm,
				     void *priv);

/**
 * ub_pages_detach_locked() - the page mover is gone
 *
 * Forgets @pm and @priv: pages.c calls none of the backend's operations
 * again, and ub_pages_snapshot() shows no page mover. The balloon must be
 * empty (ub_pages_drain_locked()).
 *
 * Context: Caller holds engine.exchange and engine.lock.
 */
void ub_pages_detach_locked(void);

/**
 * ub_pages_peek() - whether a page mover is attached, read without a lock
 * @settles: set to whether its exchanges may wait for the host (it has
 *	settle()); false with no page mover
 *
 * For OOM and pressure deflation, which choose how to take engine.exchange
 * before they hold a lock: the mover is read once, and may change before
 * the caller takes the locks and checks again.
 *
 * Context: Any context; takes no lock, does not sleep.
 * Return: true if a page mover is attached.
 */
bool ub_pages_peek(bool *settles);

/**
 * ub_pages_ready_locked() - make the protocol ready for an exchange
 *
 * Acts on a host reset that a migration saw (ub_host_reset_locked()) and
 * restarts the protocol if an earlier restart failed.
 *
 * Context: Caller holds engine.exchange and engine.lock; may sleep (host
 * exchanges).
 * Return: true if the protocol is up.
 */
bool ub_pages_ready_locked(void);

/**
 * ub_pages_snapshot() - the page mover's part of a snapshot, without engine.lock
 * @snap: its isolated, huge_pages, unanswered and huge_order are filled
 *	in, with counts that may race a change; all 0 with no page mover
 *
 * Context: Any context; takes no lock, does not sleep.
 */
void ub_pages_snapshot(struct ub_snapshot *snap);

/**
 * ub_release_refused_locked() - give the pages the host refused back
 * @cycle_end: the inflation cycle ends: huge pages may be tried again
 *
 * Refused pages are held aside so they are not taken again in the same
 * cycle; they go back at its end, when too many are held, and before OOM
 * deflation, so that a host that refuses everything does not drain the
 * guest. They were never the balloon's: its size does not change.
 *
 * Context: Caller holds engine.lock; does not sleep.
 */
void ub_release_refused_locked(bool cycle_end);

/**
 * ub_drop_all_locked() - free every page without telling the host
 *
 * For a host that has forgotten every page (a reset, or a shutdown that
 * says so): the balloon is empty afterwards and its size reported. Pages
 * in the middle of a migration are waited for: their migration fails on
 * engine.exchange and puts them back.
 *
 * Context: Caller holds engine.exchange and engine.lock; sleeps.
 */
void ub_drop_all_locked(void);

/**
 * ub_host_reset_locked() - the host reset the protocol
 *
 * It holds none of our pages any more: counts and traces the reset, frees
 * every page (ub_drop_all_locked()) and restarts the protocol. Resets in a
 * row hold inflation back, doubling up to 30 s, so that a host that
 * answers every request with a reset does not keep a vCPU allocating and
 * freeing.
 *
 * Context: Caller holds engine.exchange and engine.lock; sleeps.
 */
void ub_host_reset_locked(void);

/**
 * ub_inflate_plan_locked() - plan the worker's next inflation batch
 * @want: pages (order 0) the floor lets the balloon grow by
 * @order: set to the order of the batch's pages: the backend's huge_order,
 *	or 0 if huge pages are off, not ready or more than @want
 * @delay: set, when nothing is to be taken now, to the jiffies to wait
 *
 * Nothing is taken while a reset or a host's failures back off, while the
 * host owes answers, or at the pressure reserve (then met). Otherwise
 * @want is cut to the inflate rate's batch, the backend's batch and the
 * room above the reserve.
 *
 * Context: Caller holds engine.exchange and engine.lock; may sleep (asks
 * the host whether it has answered).
 * Return: pages (order 0) for ub_inflate(), or 0 with *@delay set.
 */
unsigned long ub_inflate_plan_locked(unsigned long want, unsigned int *order,
				     unsigned long *delay);

/**
 * ub_inflate() - allocate and hand the host one inflation batch
 * @want: pages (order 0), from ub_inflate_plan_locked()
 * @order: the order planned; falls back to 0 if no huge page is free
 *	without reclaim
 *
 * The pages are allocated with no lock held (reclaim may run; a batch that
 * has to reclaim is cut after 200 ms), then engine.exchange is taken for the
 * host exchange and engine.lock for the lists (dropped while the host is
 * waited for). Pages the target no longer wants by then (an OOM
 * deflation, a lower target, a pause) are freed before the host sees them.
 * Only the worker calls it: it owns the inflation batch, and the backend
 * cannot change while it runs.
 *
 * Context: The worker, without engine.exchange or engine.lock; takes both;
 * sleeps.
 * Return: jiffies until the worker's next step (0: at once), or UB_IDLE if
 * the balloon is paused.
 */
unsigned long ub_inflate(unsigned long want, unsigned int order);

/**
 * ub_deflate_locked() - give up to @want pages back to the guest
 * @want: pages (order 0); a batch of huge pages gives back whole huge
 *	pages, or one is split first where the host allows it
 * @force: the device is going away: release pages even if the host could
 *	not be told or refused them
 * @timeout: the longest wait for the host's answer, in jiffies (0: the
 *	backend's own bound)
 *
 * One batch, the host told first. Pages the host would not release stay in
 * the balloon, and so does every page where the host must hear first
 * (UB_FEAT_TELL_HOST) but failed to answer or still owes answers; after a
 * reset they all go back.
 *
 * Context: Caller holds engine.exchange and engine.lock; drops engine.lock
 * during the host exchange; may sleep.
 * Return: pages (order 0) released.
 */
unsigned long ub_deflate_locked(unsigned long want, bool force,
				unsigned long timeout);

/**
 * ub_deflate_untold_locked() - give pages back without telling the host
 * @want: pages (order 0), as for ub_deflate_locked()
 *
 * For OOM and pressure deflation while another exchange holds
 * engine.exchange (perhaps waiting for a host that stalled): one batch
 * from the lists, whose pages the host has all answered for, goes back to
 * the guest and the new size is reported. Nothing goes back where the host
 * must hear first (UB_FEAT_TELL_HOST).
 *
 * Context: Caller holds engine.lock; does not wait for the host.
 * Return: pages (order 0) released.
 */
unsigned long ub_deflate_untold_locked(unsigned long want);

/**
 * ub_deflate_step_locked() - the worker's deflation step
 * @want: pages (order 0) above the target
 *
 * One batch of ub_deflate_locked(), cut to the deflate rate's batch.
 * Records in engine.blocked why nothing went back, if so.
 *
 * Context: The worker; caller holds engine.exchange and engine.lock
 * (dropped during the exchange); may sleep.
 * Return: jiffies until the worker's next step (0: at once).
 */
unsigned long ub_deflate_step_locked(unsigned long want);

/**
 * ub_pages_drain_locked() - give every page back, for detach
 *
 * The host is told while it answers; it has 10 s in all to answer the
 * requests it owes. The pages of those it never answers stay allocated for
 * good, since it may still discard them, and leave the size. Drops and
 * retakes engine.lock while it waits for the host and for pages in the
 * middle of a migration.
 *
 * Context: Caller holds engine.exchange and engine.lock, with the worker
 * stopped; sleeps.
 * Return: pages (order 0) left allocated for good.
 */
unsigned long ub_pages_drain_locked(void);

/* size_mover.c: a size mover's balloon */

/**
 * ub_size_mover_attach_locked() - a size mover attached
 * @sm: the backend's operations, which size_mover.c calls until
 *	ub_size_mover_detach_locked()
 * @priv: the backend's argument to each of them
 *
 * The balloon is what its driver holds now (@get_size), and that is the
 * size last handed over.
 *
 * Context: Caller holds engine.lock; may sleep.
 */
void ub_size_mover_attach_locked(const struct ub_size_mover *sm, void *priv);

/**
 * ub_size_mover_detach_locked() - the size mover is gone
 *
 * Its driver keeps the balloon (the backend's @shutdown handed it back):
 * the size is 0 from now on. Forgets @sm and @priv: size_mover.c calls none of
 * the backend's operations again.
 *
 * Context: Caller holds engine.lock.
 */
void ub_size_mover_detach_locked(void);

/**
 * ub_size_mover_step_locked() - the worker's step for a size mover
 *
 * Accounts for the size the driver has reached (counted and traced as
 * inflation or deflation), then hands it the next size in force: at most
 * one rate step away, never past what the floor and the pressure reserve
 * allow. It is handed over every step, so a target someone else set in
 * the driver is overridden.
 *
 * Context: The worker; caller holds engine.lock; may sleep.
 * Return: jiffies until the next step, or UB_IDLE once the size is reached.
 */
unsigned long ub_size_mover_step_locked(void);

/**
 * ub_size_mover_shrink_locked() - cut a size mover's balloon at once
 * @want: pages to give back
 * @left: set to the size now in force, in pages
 *
 * For OOM and pressure deflation: lowers the size handed to the driver by
 * @want, which the driver gives back in its own time. While an earlier cut
 * is still coming back it cuts nothing more, or calls in a row would add
 * up their cuts from a size that lags the driver.
 *
 * Context: Caller holds engine.lock; may sleep.
 * Return: pages promised (not yet back in the guest); 0 if none.
 */
unsigned long ub_size_mover_shrink_locked(unsigned long want,
					  unsigned long *left);

/**
 * ub_size_mover_cut_pending() - whether the driver still owes a cut's pages
 *
 * For the shrinker's count, without engine.lock: it may race a step.
 *
 * Context: Any context; takes no lock.
 * Return: true while the size handed over is below the size reached.
 */
bool ub_size_mover_cut_pending(void);

#endif /* UB_ENGINE_H */
