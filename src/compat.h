/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Differences between kernel versions, decided by compile tests against the
 * target kernel's headers (src/compat/configure.sh writes compat_config.h),
 * never by version numbers.
 */
#ifndef UB_COMPAT_H
#define UB_COMPAT_H

#include "compat_config.h"

/* Mainline renamed balloon_compaction.h to balloon.h. */
#ifdef UB_HAVE_LINUX_BALLOON_H
#include <linux/balloon.h>
#else
#include <linux/balloon_compaction.h>
#endif

/*
 * Mainline renamed CONFIG_BALLOON_COMPACTION (balloon pages that compaction
 * can move) to CONFIG_BALLOON_MIGRATION; the sources use the new name.
 */
#if defined(CONFIG_BALLOON_COMPACTION) && !defined(CONFIG_BALLOON_MIGRATION)
#define CONFIG_BALLOON_MIGRATION 1
#endif

#ifdef CONFIG_BALLOON_MIGRATION
#include <linux/migrate.h>
#include <linux/vmstat.h>

/*
 * A balloon driver's migratepage does its own part (telling the host) and
 * answers 0 if the new page went into the balloon, -ENOENT if the old page
 * left it but the new one did not, or another error if nothing moved (the
 * old page is then put back). For the first two the balloon core (Linux
 * 7.x, mm/balloon.c) does the rest under its own lock: the new page onto
 * the list with the balloon's reference, the old one off the balloon and
 * its reference dropped, the isolated count and the vmstat event (and the
 * managed page count, only for a driver that set adjust_managed_page_count,
 * which pages.c does not). Earlier cores left all that to the driver, which
 * inserted the new page itself (balloon_page_insert() under the balloon's
 * pages_lock). The driver's migratepage returns its answer through
 * ub_balloon_migrated(): on an earlier core it does the newer core's part,
 * on a newer core it passes the answer on.
 */
#ifdef UB_HAVE_BALLOON_PAGE_INSERT
static inline int ub_balloon_migrated(struct balloon_dev_info *b,
				      struct page *newpage, struct page *page,
				      int rc)
{
	unsigned long flags;

	if (rc && rc != -ENOENT)
		return rc;
	if (!rc)
		get_page(newpage);	/* the balloon's reference */
	spin_lock_irqsave(&b->pages_lock, flags);
	if (!rc) {
		balloon_page_insert(b, newpage);
		__count_vm_event(BALLOON_MIGRATE);
	} else {
		__count_vm_event(BALLOON_DEFLATE);
	}
	b->isolated_pages--;
	spin_unlock_irqrestore(&b->pages_lock, flags);
	balloon_page_finalize(page);
	put_page(page);		/* drop the balloon's reference */
	return MIGRATEPAGE_SUCCESS;
}
#else
static inline int ub_balloon_migrated(struct balloon_dev_info *b,
				      struct page *newpage, struct page *page,
				      int rc)
{
	return rc;
}
#endif
#endif /* CONFIG_BALLOON_MIGRATION */

/*
 * A workqueue was per-CPU unless WQ_UNBOUND was given; Linux 6.17 added
 * WQ_PERCPU to say so, and 7.x warns (a WARNING with a backtrace) at
 * alloc_workqueue() when a caller gives neither. Where WQ_PERCPU is
 * missing, 0 asks for the same per-CPU queue.
 */
#ifndef UB_HAVE_WQ_PERCPU
#define WQ_PERCPU 0
#endif

/*
 * Linux 6.7 allocates shrinkers (shrinker_alloc, shrinker_register,
 * shrinker_free); before it a caller embedded one and called
 * register_shrinker(). The sources use the new API; this maps it onto the
 * old one. A registration that fails (old API only) leaves the shrinker
 * unregistered, as the new API cannot report it either.
 */
#ifndef UB_HAVE_SHRINKER_ALLOC
#include <linux/shrinker.h>
#include <linux/slab.h>

struct ub_compat_shrinker {
	struct shrinker shrinker;
	const char *name;
};

static inline struct shrinker *shrinker_alloc(unsigned int flags,
					      const char *name)
{
	struct ub_compat_shrinker *c = kzalloc(sizeof(*c), GFP_KERNEL);

	if (!c)
		return NULL;
	c->shrinker.flags = flags;
	c->shrinker.seeks = DEFAULT_SEEKS;
	c->name = name;
	return &c->shrinker;
}

static inline void shrinker_register(struct shrinker *shrinker)
{
	struct ub_compat_shrinker *c =
		container_of(shrinker, struct ub_compat_shrinker, shrinker);

	if (register_shrinker(shrinker, "%s", c->name))
		pr_warn("shrinker %s not registered\n", c->name);
}

static inline void shrinker_free(struct shrinker *shrinker)
{
	if (!shrinker)
		return;
	unregister_shrinker(shrinker);
	kfree(container_of(shrinker, struct ub_compat_shrinker, shrinker));
}
#endif

/*
 * Linux 6.8 named the largest order the buddy allocator hands out
 * MAX_PAGE_ORDER. Before it MAX_ORDER was one more (until 6.4) or the same
 * (6.4 to 6.7): MAX_ORDER - 1 is a valid order on both, the largest until
 * 6.4 and one less than it on 6.4 to 6.7.
 */
#include <linux/mmzone.h>
#ifndef MAX_PAGE_ORDER
#define MAX_PAGE_ORDER	(MAX_ORDER - 1)
#endif

/*
 * virtio-balloon stats tags that Linux 6.12's uapi header added; the
 * protocol had them first, so a host may ask for them from any guest.
 */
#include <linux/virtio_balloon.h>
#ifndef VIRTIO_BALLOON_S_OOM_KILL
#define VIRTIO_BALLOON_S_OOM_KILL	10
#define VIRTIO_BALLOON_S_ALLOC_STALL	11
#define VIRTIO_BALLOON_S_ASYNC_SCAN	12
#define VIRTIO_BALLOON_S_DIRECT_SCAN	13
#define VIRTIO_BALLOON_S_ASYNC_RECLAIM	14
#define VIRTIO_BALLOON_S_DIRECT_RECLAIM	15
#endif

/*
 * Linux 6.11 passes virtio_find_vqs() one struct virtqueue_info per queue
 * instead of parallel arrays of callbacks, names and ctx flags. The sources
 * use the new API; this maps it onto the old one. A queue with no name is
 * skipped by both. The arrays are on the stack, so a caller asks for at most
 * UB_COMPAT_MAX_VQS queues (virtio-balloon has 5).
 */
#ifndef UB_HAVE_VIRTQUEUE_INFO
#include <linux/bug.h>
#include <linux/virtio_config.h>

#define UB_COMPAT_MAX_VQS	8

struct virtqueue_info {
	const char *name;
	vq_callback_t *callback;
	bool ctx;
};

static inline int ub_virtio_find_vqs(struct virtio_device *vdev,
				     unsigned int nvqs,
				     struct virtqueue *vqs[],
				     struct virtqueue_info vqs_info[],
				     struct irq_affinity *desc)
{
	vq_callback_t *callbacks[UB_COMPAT_MAX_VQS];
	const char *names[UB_COMPAT_MAX_VQS];
	bool ctx[UB_COMPAT_MAX_VQS];
	unsigned int i;

	if (WARN_ON_ONCE(nvqs > UB_COMPAT_MAX_VQS))
		return -EINVAL;
	for (i = 0; i < nvqs; i++) {
		callbacks[i] = vqs_info[i].callback;
		names[i] = vqs_info[i].name;
		ctx[i] = vqs_info[i].ctx;
	}
	return virtio_find_vqs_ctx(vdev, nvqs, vqs, callbacks, names, ctx,
				   desc);
}
#define virtio_find_vqs ub_virtio_find_vqs
#endif

#endif /* UB_COMPAT_H */
