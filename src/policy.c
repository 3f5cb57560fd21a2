// SPDX-License-Identifier: GPL-2.0
/*
 * The policy: which balloon size is in force, and why. The host's request,
 * the user's override, the cap after an OOM deflation, the floor and the
 * pressure reserve are decided here and written nowhere else; the worker
 * (engine.c), the page mover (pages.c) and OOM deflation (oom.c) ask and
 * report through the functions below, all under engine.lock.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/math.h>
#include <linux/mm.h>

#include "engine.h"
#include "ub_trace.h"

/* What decides the target in force; under engine.lock, read racily by ub_policy_snapshot(). */
static struct ub_policy {
	unsigned long host_target;	/* pages the host asks for */
	unsigned long user_target;	/* pages; valid if user_override */
	unsigned long oom_cap;		/* pages; valid if oom_capped */
	unsigned long floor_cap;	/* pages; valid if floor_held */
	bool user_override;
	bool oom_capped;
	bool floor_held;
	bool reserve_hit;		/* inflation met the pressure reserve */
} pol;

static const char *const ub_reason_names[] = {
	[UB_REASON_HOST]	= "host",
	[UB_REASON_USER]	= "user",
	[UB_REASON_OOM]		= "oom",
	[UB_REASON_FLOOR]	= "floor",
};

const char *ub_reason_name(enum ub_reason reason)
{
	return ub_reason_names[reason];
}

/*
 * The target in force: the user's or the host's, capped after OOM, then
 * (@floor) by the floor. Callers hold engine.lock, except ub_policy_snapshot().
 */
static unsigned long ub_decide(enum ub_reason *why, bool floor)
{
	unsigned long target = pol.host_target;
	enum ub_reason reason = UB_REASON_HOST;

	if (pol.user_override) {
		target = pol.user_target;
		reason = UB_REASON_USER;
	}
	if (pol.oom_capped && pol.oom_cap < target) {
		target = pol.oom_cap;
		reason = UB_REASON_OOM;
	}
	if (floor && pol.floor_held && pol.floor_cap < target) {
		target = pol.floor_cap;
		reason = UB_REASON_FLOOR;
	}
	*why = reason;
	return target;
}

/* The target before the floor. */
unsigned long ub_requested_locked(enum ub_reason *why)
{
	ub_assert_locked();
	return ub_decide(why, false);
}

unsigned long ub_target_locked(enum ub_reason *why)
{
	ub_assert_locked();
	return ub_decide(why, true);
}

/* Trace the target in force if a state change moved it. */
void ub_note_target_locked(unsigned long old, enum ub_reason cause)
{
	enum ub_reason why;
	unsigned long now = ub_target_locked(&why);

	ub_assert_locked();

	if (now != old)
		trace_target(ub_pages_to_bytes(old), ub_pages_to_bytes(now),
			     ub_reason_name(cause));
}

/*
 * For readers that do not take the lock (sysfs, debugfs): the same
 * decision the worker makes, from fields that may race a change.
 */
void ub_policy_snapshot(struct ub_snapshot *snap)
{
	snap->host_target = READ_ONCE(pol.host_target);
	/* readers accept fields from before and after a change */
	snap->target = data_race(ub_decide(&snap->target_source, true));
	snap->user_override = READ_ONCE(pol.user_override);
	snap->oom_capped = READ_ONCE(pol.oom_capped);
	snap->floor_held = READ_ONCE(pol.floor_held);
	snap->reserve_hit = READ_ONCE(pol.reserve_hit);
}

bool ub_user_override_locked(void)
{
	ub_assert_locked();
	return pol.user_override;
}

/*
 * The host's target, as it asked for it (@request: a notification, such as
 * virtio's config change) or as we learned it (a poll, or the answer to a
 * command). A request, a repeated one too, ends an OOM cap: the host saw
 * the deflation in the balloon's size and asks again. A polled target ends
 * it only when it changes, or the balloon would refill a second after OOM.
 */
void ub_host_target_locked(unsigned long pages, bool request)
{
	bool changed = pages != pol.host_target;
	unsigned long old;
	enum ub_reason why;

	ub_assert_locked();

	old = ub_target_locked(&why);
	if (changed) {
		pol.host_target = pages;
		ub_count(UB_STAT_TARGET_CHANGES, 1);
	}
	if (!pol.user_override && (request || changed))
		pol.oom_capped = false;
	ub_note_target_locked(old, UB_REASON_HOST);
}

/*
 * Pages the floor still lets us take. Once inflation has met the pressure
 * reserve (pages.c or size_mover.c report it), the floor in force is at least
 * that reserve.
 *
 * A floor of 0 in force sets no limit: MemAvailable leaves out free pages
 * (on 7.2 the per-CPU lists hold tens of MiB after a large process exits),
 * so measuring it against 0 would stop the balloon short while the
 * allocator still has pages. The allocator's own failure stops inflation
 * then, as in the in-tree drivers. ULONG_MAX is at least any want, so
 * ub_apply_floor_locked() never holds, and never adds it to the size.
 */
static unsigned long ub_floor_allowance(void)
{
	struct ub_settings set;
	unsigned long floor;
	long avail;

	ub_get_settings(&set);
	floor = set.floor >> PAGE_SHIFT;

	if (pol.reserve_hit)
		floor = max(floor, ub_pressure_reserve());
	if (!floor)
		return ULONG_MAX;

	avail = si_mem_available();
	return avail > 0 && avail > floor ? avail - floor : 0;
}

/*
 * Decide whether the floor holds the balloon where it is. Only a change of
 * state is an event; the cap itself follows MemAvailable quietly.
 */
unsigned long ub_apply_floor_locked(unsigned long want)
{
	unsigned long allow = ub_floor_allowance();
	unsigned long old;
	enum ub_reason why;

	ub_assert_locked();

	if (allow >= want) {
		if (pol.floor_held) {
			old = ub_target_locked(&why);
			pol.floor_held = false;
			ub_requested_locked(&why);
			ub_note_target_locked(old, why);
		}
		pol.reserve_hit = false;
		return want;
	}
	if (!pol.floor_held) {
		old = ub_target_locked(&why);
		pol.floor_held = true;
		pol.floor_cap = ub_size() + allow;
		ub_count(UB_STAT_FLOOR_HOLDS, 1);
		ub_note_target_locked(old, UB_REASON_FLOOR);
	}
	pol.floor_cap = ub_size() + allow;
	return allow;
}

/*
 * Pages inflation may still take before MemAvailable falls below the
 * pressure reserve (ub_pressure_reserve() below), by any path: free pages
 * the balloon takes are the ones kswapd refills by evicting the guest's
 * page cache, so stopping only where inflation itself reclaims is not
 * enough. A batch is sized to this room; each page taken lowers
 * MemAvailable by about one page.
 */
unsigned long ub_reserve_room(void)
{
	long reserve = ub_pressure_reserve();
	long available;

	if (!reserve)
		return ULONG_MAX;
	available = si_mem_available();
	return available > reserve ? available - reserve : 0;
}

/* The balloon is at or below what the floor allows again: release it. */
void ub_floor_release_locked(void)
{
	unsigned long old;
	enum ub_reason why;

	ub_assert_locked();

	if (!pol.floor_held)
		return;
	old = ub_target_locked(&why);
	pol.floor_held = false;
	pol.reserve_hit = false;
	ub_note_target_locked(old, why);
}

/* Inflation met the pressure reserve: it holds the balloon as a floor. */
void ub_reserve_met_locked(void)
{
	ub_assert_locked();
	pol.reserve_hit = true;
}

/* After an OOM deflation the balloon stays at @left until asked again. */
void ub_oom_cap_locked(unsigned long left)
{
	ub_assert_locked();
	pol.oom_capped = true;
	pol.oom_cap = left;
}

/* The user sets (@override, @pages) or clears the override: a new request. */
void ub_user_request_locked(bool override, unsigned long pages)
{
	ub_assert_locked();
	pol.user_override = override;
	pol.user_target = override ? pages : 0;
	pol.oom_capped = false;
}

/*
 * A backend attaches: the host is taken to want @host_target, nothing
 * holds. The user's override stays: it is the user's, not the device's,
 * and a restore after sleep or a replugged device should not undo it.
 * It goes only where it could no longer be written (more than the guest's
 * memory, after memory was unplugged), rather than fill the guest.
 */
void ub_policy_reset_locked(unsigned long host_target)
{
	ub_assert_locked();
	pol.host_target = host_target;
	if (pol.user_override && pol.user_target > ub_guest_pages()) {
		pr_warn("target override of %llu bytes dropped: more than the guest's memory\n",
			ub_pages_to_bytes(pol.user_target));
		pol.user_override = false;
		pol.user_target = 0;
	}
	pol.oom_capped = false;
	pol.floor_held = false;
	pol.reserve_hit = false;
}

/*
 * Reclaim pressure: below this much MemAvailable the guest would rather have
 * the balloon's pages than thrash its page cache until the OOM killer runs.
 * It is the floor or one oom_deflate_size, or 1024 * sqrt(guest bytes) if
 * larger: 32 MiB for 1 GiB, 64 MiB for 4 GiB, 256 MiB for 64 GiB.
 * MemAvailable counts the page cache as available, so a few MiB of it mean
 * a guest re-reading its own programs; what a guest needs beyond its
 * watermarks grows with it, but more slowly, as the watermarks themselves
 * do (min_free_kbytes is sqrt(16 * lowmem KiB)).
 */
unsigned long ub_pressure_threshold(void)
{
	struct ub_settings set;
	u64 bytes, curve;

	ub_get_settings(&set);
	bytes = max(set.floor, set.oom_deflate_size);
	curve = 1024 * int_sqrt64(ub_pages_to_bytes(ub_guest_pages()));

	return max(bytes, curve) >> PAGE_SHIFT;
}

/*
 * MemAvailable that inflation does not take the guest below while
 * oom_deflate is on (pages.c): four times the threshold (128 MiB for
 * 1 GiB, 1 GiB for 64 GiB), twice the level that pressure deflation
 * restores, so that a balloon held there leaves the guest free pages above
 * its watermarks, kswapd idle, and the shrinker never called.
 */
unsigned long ub_pressure_reserve(void)
{
	struct ub_settings set;

	ub_get_settings(&set);
	if (!set.oom_deflate || !(ub_features() & UB_FEAT_OOM_DEFLATE))
		return 0;
	return 4 * ub_pressure_threshold();
}
