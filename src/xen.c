// SPDX-License-Identifier: GPL-2.0
/*
 * Xen backend. Every kernel built with CONFIG_XEN has the Xen balloon core
 * (drivers/xen/balloon.c): it does the hypercalls, the PV p2m updates and
 * memory hotplug, and lends ballooned frames to grant-table users. A second
 * page engine beside it would fight it, so this backend is a size mover:
 * the engine decides the balloon size in force and we turn it into the
 * core's target with balloon_set_new_target(); the size we report is read
 * back from balloon_stats.
 *
 * Units. The core aims current_pages (frames the domain has) at
 * target_pages. total_pages counts every frame the core could populate:
 * the boot allocation, the PV extra regions up to maxmem and hotplugged
 * memory. So the balloon is total - current, and a balloon of B pages is
 * the core target total - B. Frames lent to grant users leave the core's
 * balloon list but not total - current, so they do not look like deflation.
 *
 * The host. xenstore memory/target (relative to the domain) is the desired
 * domain memory in KiB, not a balloon size. We watch it ourselves, so that
 * the backend works with or without the in-kernel frontend
 * (CONFIG_XEN_BALLOON). A dom0 has no such key before the first
 * `xl mem-set 0`: until then the host is taken to want the core's target we
 * found at load. HVM and PVH domUs count memory they never saw (the target
 * includes it), so as the frontend does we subtract static-max minus the
 * pages at boot, learned once; PV domains and dom0 need nothing.
 *
 * Ordering with the in-kernel frontend. Its watch on the same node fires
 * for every change and sets the core's target to the host's value. Both
 * callbacks run in the one xenwatch thread, in the order xenstored queues
 * the events. Usually the frontend's runs first (its watch is the older)
 * and ours re-applies our target before the engine even looks
 * (events_after_frontend in debugfs), but that order is not promised.
 * Whenever anything else set the core's target last (the frontend, its
 * target_kb file), the engine's next step or the once-a-second poll puts
 * ours back; the `reapplied` counter in debugfs says how often. In the
 * meantime the core may have moved one batch (at most 2 MiB) towards the
 * other target, which is why the floor is best effort here.
 *
 * Unload leaves the guest at the host's target, as the frontend would.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/mm.h>
#include <linux/module.h>
#include <linux/notifier.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <xen/balloon.h>
#include <xen/xen.h>
#include <xen/xenbus.h>

#ifdef CONFIG_X86
#include <asm/cpu_device_id.h>
#endif

#include "uniballoon.h"

#define UBX_KIB_TO_PAGES(kib)	((kib) >> (PAGE_SHIFT - 10))

struct ub_xen {
	/* the watch callback and the engine both set the core's target */
	spinlock_t lock;
	struct notifier_block xenstore_nb;
	struct xenbus_watch watch;
	bool watching;
	int watch_err;

	/* the host: memory/target in pages, once read */
	bool host_known;
	unsigned long host_pages;
	/* HVM/PVH: static-max minus the pages at boot, learned once */
	bool diff_known;
	unsigned long static_max;
	unsigned long target_diff;
	/* the core's target when we came: kept while the host says nothing */
	unsigned long found_target;
	/* the core's target the engine wants, and the last one we wrote */
	unsigned long core_target;
	bool core_target_set;
	unsigned long applied;

	u64 events;		/* watch callbacks */
	u64 missing;		/* callbacks without a memory/target key */
	u64 sets;		/* balloon_set_new_target() calls */
	u64 reapplied;		/* ... of them, where someone else had moved it */
	u64 after_frontend;	/* callbacks that found the frontend had run */
};

static struct ub_xen *ubx;

/* The balloon: frames the core could populate but the domain lacks. */
static unsigned long ubx_get_size(void *priv)
{
	unsigned long total = READ_ONCE(balloon_stats.total_pages);
	unsigned long current_pages = READ_ONCE(balloon_stats.current_pages);

	return total > current_pages ? total - current_pages : 0;
}

/* The host's wish as a balloon size; the engine's host_target. */
static unsigned long ubx_host_balloon(struct ub_xen *x)
{
	unsigned long total = READ_ONCE(balloon_stats.total_pages);
	unsigned long want = READ_ONCE(x->found_target);

	if (READ_ONCE(x->host_known))
		want = READ_ONCE(x->host_pages);
	return total > want ? total - want : 0;
}

/* The core target the host asks for; unload leaves the core there. */
static unsigned long ubx_host_core_target(struct ub_xen *x)
{
	return READ_ONCE(x->host_known) ? READ_ONCE(x->host_pages) :
					  READ_ONCE(x->found_target);
}

static void ubx_apply(struct ub_xen *x, unsigned long target)
{
	unsigned long now = READ_ONCE(balloon_stats.target_pages);

	lockdep_assert_held(&x->lock);
	if (now == target)
		return;
	/* someone else wrote the core's target since we did (or since load) */
	if (now != x->applied)
		x->reapplied++;
	x->sets++;
	x->applied = target;
	balloon_set_new_target(target);
}

/* Called under the engine's lock: the balloon in force is @pages. */
static int ubx_set_size(void *priv, unsigned long pages)
{
	struct ub_xen *x = priv;
	unsigned long total = READ_ONCE(balloon_stats.total_pages);
	unsigned long target = total > pages ? total - pages : 0;

	/*
	 * An empty balloon leaves the rest to the host: a target above what
	 * the core has seen makes it hotplug memory, as without us.
	 */
	if (!pages && READ_ONCE(x->host_known) &&
	    READ_ONCE(x->host_pages) > target)
		target = READ_ONCE(x->host_pages);
	spin_lock(&x->lock);
	x->core_target = target;
	x->core_target_set = true;
	ubx_apply(x, target);
	spin_unlock(&x->lock);
	return 0;
}

/* Polled once a second: the host's wish follows total_pages (hotplug). */
static int ubx_poll(void *priv, unsigned long *target)
{
	*target = ubx_host_balloon(priv);
	return 0;
}

/* HVM/PVH targets include memory the guest never saw; see the top. */
static void ubx_learn_diff(struct ub_xen *x)
{
	unsigned long long kib;
	unsigned long boot;

	if (x->diff_known)
		return;
	x->diff_known = true;
	if (xenbus_scanf(XBT_NIL, "memory", "static-max", "%llu", &kib) == 1)
		x->static_max = UBX_KIB_TO_PAGES(kib);
	if (xen_pv_domain() || xen_initial_domain() || !x->static_max)
		return;
	/* total_pages is the boot allocation unless memory was hotplugged */
	boot = READ_ONCE(balloon_stats.total_pages);
	x->target_diff = x->static_max > boot ? x->static_max - boot : 0;
}

static void ubx_watch_fn(struct xenbus_watch *watch, const char *path,
			 const char *token)
{
	struct ub_xen *x = container_of(watch, struct ub_xen, watch);
	unsigned long long kib;
	unsigned long pages;

	x->events++;
	/*
	 * The frontend's callback for this event has just set the core's
	 * target to the host's value: ours wins until the engine decides.
	 */
	spin_lock(&x->lock);
	if (READ_ONCE(balloon_stats.target_pages) != x->applied)
		x->after_frontend++;
	if (x->core_target_set)
		ubx_apply(x, x->core_target);
	spin_unlock(&x->lock);
	if (xenbus_scanf(XBT_NIL, "memory", "target", "%llu", &kib) != 1) {
		/* a dom0 before the first xl mem-set 0: nothing asked yet */
		x->missing++;
		return;
	}
	ubx_learn_diff(x);
	pages = UBX_KIB_TO_PAGES(kib);
	pages = pages > x->target_diff ? pages - x->target_diff : 0;
	WRITE_ONCE(x->host_pages, pages);
	WRITE_ONCE(x->host_known, true);
	ub_set_host_target(ubx_host_balloon(x));
}

/* xenstore is up (at once, or later in a dom0 whose xenstored starts late) */
static int ubx_xenstore_ready(struct notifier_block *nb, unsigned long event,
			      void *data)
{
	struct ub_xen *x = container_of(nb, struct ub_xen, xenstore_nb);

	x->watch_err = register_xenbus_watch(&x->watch);
	if (x->watch_err)
		pr_err("xen: cannot watch memory/target: %d\n", x->watch_err);
	else
		x->watching = true;
	return NOTIFY_DONE;
}

static int ubx_shutdown(void *priv)
{
	struct ub_xen *x = priv;

	/* our watch is gone: what the host asked for last stands */
	balloon_set_new_target(ubx_host_core_target(x));
	return 0;
}

static int ubx_debugfs_show(void *priv, struct seq_file *m)
{
	struct ub_xen *x = priv;

	seq_printf(m, "domain: %s\n", xen_initial_domain() ? "dom0" :
		   xen_pv_domain() ? "pv" : "hvm/pvh");
	seq_printf(m, "watching: %d (error %d)\n", x->watching, x->watch_err);
	if (x->host_known)
		seq_printf(m, "host_target_kb: %lu\n",
			   (x->host_pages + x->target_diff) << (PAGE_SHIFT - 10));
	else
		seq_puts(m, "host_target_kb: none\n");
	seq_printf(m, "static_max_kb: %lu\n", x->static_max << (PAGE_SHIFT - 10));
	seq_printf(m, "target_diff_pages: %lu\n", x->target_diff);
	seq_printf(m, "found_target_pages: %lu\n", x->found_target);
	seq_printf(m, "our_target_pages: %lu\n", READ_ONCE(x->core_target));
	seq_printf(m, "core_current_pages: %lu\n", balloon_stats.current_pages);
	seq_printf(m, "core_target_pages: %lu\n", balloon_stats.target_pages);
	seq_printf(m, "core_total_pages: %lu\n", balloon_stats.total_pages);
	seq_printf(m, "core_balloon_low: %lu\n", balloon_stats.balloon_low);
	seq_printf(m, "core_balloon_high: %lu\n", balloon_stats.balloon_high);
	seq_printf(m, "core_target_unpopulated: %lu\n",
		   balloon_stats.target_unpopulated);
	seq_printf(m, "core_schedule_delay: %lu\n", balloon_stats.schedule_delay);
	seq_printf(m, "core_retry_count: %lu\n", balloon_stats.retry_count);
	seq_printf(m, "core_max_retry_count: %lu\n",
		   balloon_stats.max_retry_count);
	seq_printf(m, "watch_events: %llu\n", x->events);
	seq_printf(m, "watch_missing_key: %llu\n", x->missing);
	seq_printf(m, "target_sets: %llu\n", x->sets);
	seq_printf(m, "reapplied: %llu\n", x->reapplied);
	seq_printf(m, "events_after_frontend: %llu\n", x->after_frontend);
	return 0;
}

static const struct ub_size_mover ubx_ops = {
	.base = {
		.name		= "xen",
		.poll		= ubx_poll,
		.poll_interval	= HZ,
		.shutdown	= ubx_shutdown,
		.debugfs_show	= ubx_debugfs_show,
	},
	.set_size	= ubx_set_size,
	.get_size	= ubx_get_size,
};

int ub_xen_init(bool forced)
{
	struct ub_xen *x;
	int err;

	/* forced or not: without Xen there is no core to drive */
	if (!xen_domain()) {
		if (forced)
			pr_err("backend=xen: not running on Xen\n");
		return -ENODEV;
	}
	x = kzalloc(sizeof(*x), GFP_KERNEL);
	if (!x)
		return -ENOMEM;
	spin_lock_init(&x->lock);
	x->found_target = READ_ONCE(balloon_stats.target_pages);
	x->applied = x->found_target;
	x->watch.node = "memory/target";
	x->watch.callback = ubx_watch_fn;
	x->xenstore_nb.notifier_call = ubx_xenstore_ready;
	ubx = x;
	/*
	 * Xen lets a domain repopulate up to its maximum at any time, so OOM
	 * deflation is possible; the engine leaves it off until asked for.
	 */
	err = ub_attach_size(&ubx_ops, x, UB_FEAT_TELL_HOST | UB_FEAT_OOM_DEFLATE);
	if (err)
		goto out_free;
	/* the watch fires once at registration: the host's target arrives */
	err = register_xenstore_notifier(&x->xenstore_nb);
	if (err) {
		ub_detach();
		goto out_free;
	}
	return 0;

out_free:
	kfree(x);
	ubx = NULL;
	return err;
}

void ub_xen_exit(void)
{
	struct ub_xen *x = ubx;

	/* no callback may run once the engine has let go */
	unregister_xenstore_notifier(&x->xenstore_nb);
	if (x->watching)
		unregister_xenbus_watch(&x->watch);
	ub_detach();
	pr_info("xen: left at the host's target, %lu KiB\n",
		ubx_host_core_target(x) << (PAGE_SHIFT - 10));
	kfree(x);
	ubx = NULL;
}

/*
 * Autoload in Xen domains. PV domains, dom0 included, carry the synthetic
 * CPU feature XENPV in the cpu devices' modalias; HVM and PVH domains show
 * "Xen" as the DMI system vendor. Elsewhere neither matches.
 */
#ifdef CONFIG_X86
static const struct x86_cpu_id ubx_cpu_ids[] = {
	X86_MATCH_FEATURE(X86_FEATURE_XENPV, NULL),
	{}
};
MODULE_DEVICE_TABLE(x86cpu, ubx_cpu_ids);
#endif
MODULE_ALIAS("dmi:*:svnXen:*");
