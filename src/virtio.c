// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-balloon backend: speaks the virtio balloon protocol (inflate and
 * deflate queues of 32-bit frame numbers, the stats queue, the num_pages and
 * actual config fields) and leaves every decision to the engine.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/mm.h>
#include <linux/module.h>
#include <linux/page_reporting.h>
#include <linux/poison.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/virtio.h>
#include <linux/virtio_balloon.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <linux/vmstat.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include "uniballoon.h"

/* The protocol counts 4 KiB frames whatever the guest's page size. */
#define UBV_FRAME_SHIFT		12
#define UBV_FRAMES_PER_PAGE	(PAGE_SIZE >> UBV_FRAME_SHIFT)
/* 2 MiB per request: twice the in-tree driver's, same single round trip */
#define UBV_BATCH		512

/* Stats tags added by Linux 6.12's uapi header; the protocol had them first. */
#ifndef VIRTIO_BALLOON_S_OOM_KILL
#define VIRTIO_BALLOON_S_OOM_KILL	10
#define VIRTIO_BALLOON_S_ALLOC_STALL	11
#define VIRTIO_BALLOON_S_ASYNC_SCAN	12
#define VIRTIO_BALLOON_S_DIRECT_SCAN	13
#define VIRTIO_BALLOON_S_ASYNC_RECLAIM	14
#define VIRTIO_BALLOON_S_DIRECT_RECLAIM	15
#endif
#define UBV_NR_STATS		16

/*
 * Free page hints are blocks of the largest order the buddy allocator has.
 * MAX_PAGE_ORDER (6.8+) is that order; before, MAX_ORDER was one more
 * (until 6.4) or the same (6.4 to 6.7): MAX_ORDER - 1 is valid for both.
 */
#ifdef MAX_PAGE_ORDER
#define UBV_HINT_ORDER		MAX_PAGE_ORDER
#else
#define UBV_HINT_ORDER		(MAX_ORDER - 1)
#endif
#define UBV_HINT_GFP		(__GFP_NORETRY | __GFP_NOWARN | __GFP_NOMEMALLOC)

/*
 * Queues in protocol order. A queue whose feature was not negotiated has no
 * name when the queues are set up: it is skipped and the next one takes its
 * index on the device.
 */
enum {
	UBV_VQ_INFLATE,
	UBV_VQ_DEFLATE,
	UBV_VQ_STATS,
	UBV_VQ_FREE_PAGE,
	UBV_VQ_REPORTING,
	UBV_NR_VQS
};

struct ub_virtio {
	struct virtio_device *vdev;
	struct virtqueue *vqs[UBV_NR_VQS];
	wait_queue_head_t acked;

	/* config and stats requests arrive in interrupt context */
	spinlock_t stop_lock;
	bool stopping;
	struct work_struct config_work;
	struct work_struct stats_work;
	struct work_struct hint_work;

	__virtio32 frames[UB_BATCH_MAX * UBV_FRAMES_PER_PAGE];
	struct virtio_balloon_stat stats[UBV_NR_STATS];
#ifdef CONFIG_VM_EVENT_COUNTERS
	unsigned long events[NR_VM_EVENT_ITEMS];
#endif

	/* raw protocol counters for debugfs */
	u64 inflate_requests;
	u64 deflate_requests;
	u64 frames_inflated;
	u64 frames_deflated;
	u64 stats_requests;
	u64 config_changes;
	u64 broken_waits;
	u32 poison_val;		/* as written, if PAGE_POISON */

	/* free page hinting, all owned by hint_work once the device runs */
	bool hinting;
	unsigned long hint_id_stale;	/* bit 0: config changed since read */
	u32 hint_id;			/* host's command id, as last read */
	__virtio32 hint_start;		/* command id we answer */
	__virtio32 hint_end;		/* VIRTIO_BALLOON_CMD_ID_STOP */
	struct list_head hinted;	/* blocks the host may skip */
	unsigned long hinted_held;	/* blocks on that list */
	u64 hint_commands;
	u64 hinted_blocks;
	u64 hint_releases;
	u64 hint_errors;
	int hint_end_reason;		/* why the last round ended */

#ifdef CONFIG_PAGE_REPORTING
	/* free page reporting: the kernel hands us free blocks to report */
	struct page_reporting_dev_info reporting;
	bool reporting_on;
	u64 reports;
	u64 reported_bytes;
	u64 report_errors;
#endif
};

static struct ub_virtio *ubv_bound;	/* the one device we drive */

static void ubv_ack(struct virtqueue *vq)
{
	struct ub_virtio *vb = vq->vdev->priv;

	wake_up(&vb->acked);
}

/* Queue @work unless the device is going away. */
static void ubv_queue(struct ub_virtio *vb, struct work_struct *work)
{
	unsigned long flags;

	spin_lock_irqsave(&vb->stop_lock, flags);
	if (!vb->stopping)
		queue_work(system_freezable_wq, work);
	spin_unlock_irqrestore(&vb->stop_lock, flags);
}

static void ubv_config_changed(struct virtio_device *vdev)
{
	struct ub_virtio *vb = vdev->priv;

	ubv_queue(vb, &vb->config_work);
	if (vb->hinting) {
		set_bit(0, &vb->hint_id_stale);
		ubv_queue(vb, &vb->hint_work);
	}
}

static void ubv_stats_requested(struct virtqueue *vq)
{
	struct ub_virtio *vb = vq->vdev->priv;

	ubv_queue(vb, &vb->stats_work);
}

/* Notify the host of the buffer just queued and wait until it used it. */
static int ubv_kick_and_wait(struct ub_virtio *vb, struct virtqueue *vq)
{
	unsigned int len;

	virtqueue_kick(vq);
	wait_event(vb->acked,
		   virtqueue_get_buf(vq, &len) || virtqueue_is_broken(vq));
	if (virtqueue_is_broken(vq)) {
		vb->broken_waits++;
		return -EIO;
	}
	return 0;
}

/* Send one buffer of frame numbers and wait until the host has used it. */
static int ubv_tell_host(struct ub_virtio *vb, struct virtqueue *vq,
			 struct ub_batch *batch)
{
	unsigned long frames_per_page = UBV_FRAMES_PER_PAGE << batch->order;
	struct scatterlist sg;
	unsigned int i, j, n = 0;
	int err;

	if (WARN_ON(batch->count * frames_per_page > ARRAY_SIZE(vb->frames)))
		return -EINVAL;
	for (i = 0; i < batch->count; i++) {
		unsigned long first = page_to_pfn(batch->pages[i]) *
				      UBV_FRAMES_PER_PAGE;

		for (j = 0; j < frames_per_page; j++)
			vb->frames[n++] = cpu_to_virtio32(vb->vdev, first + j);
	}
	sg_init_one(&sg, vb->frames, sizeof(vb->frames[0]) * n);
	err = virtqueue_add_outbuf(vq, &sg, 1, vb, GFP_KERNEL);
	if (err)
		return err;
	err = ubv_kick_and_wait(vb, vq);
	return err ?: n;
}

/* Freed pages are zeroed (init_on_free) or filled with PAGE_POISON. */
static bool ubv_guest_zeroes(void)
{
#ifdef UB_HAVE_WANT_INIT_ON_FREE
	return want_init_on_free();
#else
	return false;
#endif
}

static bool ubv_guest_poisons(void)
{
#ifdef UB_HAVE_PAGE_POISONING_ENABLED_STATIC
	return page_poisoning_enabled_static();
#else
	return false;
#endif
}

/*
 * Tell the host what freed pages contain, so that it can keep that content
 * in pages it discards. Only the low byte matters: PAGE_POISON repeated.
 */
static void ubv_write_poison_val(struct ub_virtio *vb)
{
	u32 val = 0;

	if (!virtio_has_feature(vb->vdev, VIRTIO_BALLOON_F_PAGE_POISON))
		return;
	if (!ubv_guest_zeroes())
		memset(&val, PAGE_POISON, sizeof(val));
	vb->poison_val = val;
	virtio_cwrite_le(vb->vdev, struct virtio_balloon_config, poison_val,
			 &val);
}

#ifdef CONFIG_PAGE_REPORTING
/*
 * The kernel's page reporting hands us up to PAGE_REPORTING_CAPACITY free
 * blocks it has taken off the free lists. The host may discard their
 * contents: send them as device-writable buffers and wait until the host
 * has used them, as the blocks go back to the free lists when we return.
 */
static int ubv_report_free(struct page_reporting_dev_info *prdev,
			   struct scatterlist *sgl, unsigned int nents)
{
	struct ub_virtio *vb = container_of(prdev, struct ub_virtio,
					    reporting);
	struct virtqueue *vq = vb->vqs[UBV_VQ_REPORTING];
	struct scatterlist *sg;
	unsigned int i;
	u64 bytes = 0;
	int err;

	/* the queue is empty between reports and holds a full report */
	err = virtqueue_add_inbuf(vq, sgl, nents, vb, GFP_NOWAIT | __GFP_NOWARN);
	if (err) {
		vb->report_errors++;
		return err;
	}
	err = ubv_kick_and_wait(vb, vq);
	if (err)
		return err;
	for_each_sg(sgl, sg, nents, i)
		bytes += sg->length;
	vb->reports++;
	vb->reported_bytes += bytes;
	return 0;
}

/* Returns whether reporting runs; failing to start it is not fatal. */
static bool ubv_start_reporting(struct ub_virtio *vb)
{
	struct virtqueue *vq = vb->vqs[UBV_VQ_REPORTING];
	int err;

	vb->reporting_on = false;
	if (!virtio_has_feature(vb->vdev, VIRTIO_BALLOON_F_REPORTING))
		return false;
	if (virtqueue_get_vring_size(vq) < PAGE_REPORTING_CAPACITY) {
		dev_warn(&vb->vdev->dev,
			 "reporting queue too small (%u), no free page reporting\n",
			 virtqueue_get_vring_size(vq));
		return false;
	}
	/* order 0: the kernel's default minimum (pageblock_order) */
	vb->reporting.report = ubv_report_free;
	err = page_reporting_register(&vb->reporting);
	if (err) {
		/* e.g. -EBUSY: another device reports free pages already */
		dev_warn(&vb->vdev->dev,
			 "cannot register for free page reporting: %d\n", err);
		return false;
	}
	vb->reporting_on = true;
	return true;
}

static void ubv_stop_reporting(struct ub_virtio *vb)
{
	/* waits for a report in progress, which needs the device working */
	if (vb->reporting_on)
		page_reporting_unregister(&vb->reporting);
	vb->reporting_on = false;
}
#else
static bool ubv_start_reporting(struct ub_virtio *vb)
{
	return false;
}

static void ubv_stop_reporting(struct ub_virtio *vb)
{
}
#endif /* CONFIG_PAGE_REPORTING */

/*
 * Free page hinting. While a migration runs, the host writes a command id
 * (>= 2) into the config space. We answer with that id, then hand it free
 * blocks, which we take from the allocator so they stay free: the host may
 * skip sending their content. The host ends a round with STOP (0) and the
 * whole migration with DONE (1); the blocks go back to the allocator then.
 */
/*
 * The field is only meaningful right after a config change: QEMU shows 0
 * there once it has our answer, while the round goes on. So read it once
 * per change and keep it.
 */
static u32 ubv_hint_cmd_id(struct ub_virtio *vb)
{
	if (test_and_clear_bit(0, &vb->hint_id_stale))
		virtio_cread_le(vb->vdev, struct virtio_balloon_config,
				free_page_hint_cmd_id, &vb->hint_id);
	return vb->hint_id;
}

static void ubv_hint_drain(struct virtqueue *vq)
{
	unsigned int len;

	while (virtqueue_get_buf(vq, &len))
		;
}

static int ubv_hint_send_id(struct ub_virtio *vb, __virtio32 *id)
{
	struct virtqueue *vq = vb->vqs[UBV_VQ_FREE_PAGE];
	struct scatterlist sg;
	int err;

	ubv_hint_drain(vq);
	sg_init_one(&sg, id, sizeof(*id));
	err = virtqueue_add_outbuf(vq, &sg, 1, id, GFP_KERNEL);
	if (!err)
		virtqueue_kick(vq);
	return err;
}

/* Hint free blocks until memory runs out, the queue is full or the id moves. */
static void ubv_hint_blocks(struct ub_virtio *vb, u32 id)
{
	struct virtqueue *vq = vb->vqs[UBV_VQ_FREE_PAGE];
	struct scatterlist sg;
	struct page *page;

	int err;

	for (;;) {
		if (ubv_hint_cmd_id(vb) != id) {
			vb->hint_end_reason = 1;	/* the host moved on */
			break;
		}
		ubv_hint_drain(vq);
		/* one entry stays free for the closing STOP id */
		if (vq->num_free < 2) {
			vb->hint_end_reason = 2;
			break;
		}
		page = alloc_pages(UBV_HINT_GFP, UBV_HINT_ORDER);
		if (!page) {
			vb->hint_end_reason = 3;	/* no free block left */
			break;
		}
		sg_init_one(&sg, page_address(page),
			    PAGE_SIZE << UBV_HINT_ORDER);
		err = virtqueue_add_inbuf(vq, &sg, 1, page, GFP_KERNEL);
		if (err) {
			__free_pages(page, UBV_HINT_ORDER);
			vb->hint_errors++;
			vb->hint_end_reason = err;
			break;
		}
		virtqueue_kick(vq);
		list_add(&page->lru, &vb->hinted);
		vb->hinted_held++;
		vb->hinted_blocks++;
	}
}

static void ubv_hint_release(struct ub_virtio *vb)
{
	struct page *page, *next;

	if (!vb->hinted_held)
		return;
	list_for_each_entry_safe(page, next, &vb->hinted, lru) {
		list_del(&page->lru);
		__free_pages(page, UBV_HINT_ORDER);
	}
	vb->hinted_held = 0;
	vb->hint_releases++;
}

static void ubv_hint_work(struct work_struct *work)
{
	struct ub_virtio *vb = container_of(work, struct ub_virtio, hint_work);
	u32 id = ubv_hint_cmd_id(vb);
	int err;

	if (id == VIRTIO_BALLOON_CMD_ID_STOP ||
	    id == VIRTIO_BALLOON_CMD_ID_DONE) {
		ubv_hint_release(vb);
		return;
	}
	if (id == virtio32_to_cpu(vb->vdev, vb->hint_start))
		return;		/* this round is answered already */

	vb->hint_start = cpu_to_virtio32(vb->vdev, id);
	vb->hint_commands++;
	err = ubv_hint_send_id(vb, &vb->hint_start);
	if (err) {
		vb->hint_errors++;
		vb->hint_end_reason = err;
		ub_backend_error("hint", err);
		return;
	}
	ubv_hint_blocks(vb, id);
	err = ubv_hint_send_id(vb, &vb->hint_end);
	if (err)
		ub_backend_error("hint", err);
}

static void ubv_start_hinting(struct ub_virtio *vb)
{
	struct virtio_device *vdev = vb->vdev;

	vb->hinting = false;
	if (!virtio_has_feature(vdev, VIRTIO_BALLOON_F_FREE_PAGE_HINT))
		return;
	/* an id and at least one block must fit */
	if (virtqueue_get_vring_size(vb->vqs[UBV_VQ_FREE_PAGE]) < 2) {
		dev_warn(&vdev->dev, "free page queue too small, no hinting\n");
		return;
	}
	vb->hint_start = cpu_to_virtio32(vdev, VIRTIO_BALLOON_CMD_ID_STOP);
	vb->hint_end = cpu_to_virtio32(vdev, VIRTIO_BALLOON_CMD_ID_STOP);
	vb->hint_id = VIRTIO_BALLOON_CMD_ID_STOP;
	set_bit(0, &vb->hint_id_stale);
	vb->hinting = true;
}

static int ubv_inflate(void *priv, struct ub_batch *batch)
{
	struct ub_virtio *vb = priv;
	int n = ubv_tell_host(vb, vb->vqs[UBV_VQ_INFLATE], batch);

	if (n < 0)
		return n;
	vb->inflate_requests++;
	vb->frames_inflated += n;
	return 0;
}

static int ubv_deflate(void *priv, struct ub_batch *batch)
{
	struct ub_virtio *vb = priv;
	int n = ubv_tell_host(vb, vb->vqs[UBV_VQ_DEFLATE], batch);

	if (n < 0)
		return n;
	vb->deflate_requests++;
	vb->frames_deflated += n;
	return 0;
}

static void ubv_report_size(void *priv, unsigned long pages)
{
	struct ub_virtio *vb = priv;
	u32 actual = pages * UBV_FRAMES_PER_PAGE;

	/* legacy devices keep this field little-endian too */
	virtio_cwrite_le(vb->vdev, struct virtio_balloon_config, actual,
			 &actual);
}

static void ubv_config_work(struct work_struct *work)
{
	struct ub_virtio *vb = container_of(work, struct ub_virtio,
					    config_work);
	u32 frames;

	virtio_cread_le(vb->vdev, struct virtio_balloon_config, num_pages,
			&frames);
	vb->config_changes++;
	ub_set_host_target(frames / UBV_FRAMES_PER_PAGE);
}

static unsigned int ubv_put_stat(struct ub_virtio *vb, unsigned int idx,
				 u16 tag, u64 val)
{
	vb->stats[idx].tag = cpu_to_virtio16(vb->vdev, tag);
	vb->stats[idx].val = cpu_to_virtio64(vb->vdev, val);
	return idx + 1;
}

/* Fill the stats buffer with everything this kernel can compute. */
static unsigned int ubv_fill_stats(struct ub_virtio *vb)
{
	unsigned int idx = 0;
	struct sysinfo i;

	si_meminfo(&i);
#ifdef CONFIG_VM_EVENT_COUNTERS
	{
		unsigned long *ev = vb->events;
		u64 stalls = 0;
		int z;

		all_vm_events(ev);
		idx = ubv_put_stat(vb, idx, VIRTIO_BALLOON_S_SWAP_IN,
				   (u64)ev[PSWPIN] << PAGE_SHIFT);
		idx = ubv_put_stat(vb, idx, VIRTIO_BALLOON_S_SWAP_OUT,
				   (u64)ev[PSWPOUT] << PAGE_SHIFT);
		idx = ubv_put_stat(vb, idx, VIRTIO_BALLOON_S_MAJFLT,
				   ev[PGMAJFAULT]);
		idx = ubv_put_stat(vb, idx, VIRTIO_BALLOON_S_MINFLT,
				   ev[PGFAULT] - ev[PGMAJFAULT]);
#ifdef CONFIG_HUGETLB_PAGE
		idx = ubv_put_stat(vb, idx, VIRTIO_BALLOON_S_HTLB_PGALLOC,
				   ev[HTLB_BUDDY_PGALLOC]);
		idx = ubv_put_stat(vb, idx, VIRTIO_BALLOON_S_HTLB_PGFAIL,
				   ev[HTLB_BUDDY_PGALLOC_FAIL]);
#endif
		idx = ubv_put_stat(vb, idx, VIRTIO_BALLOON_S_OOM_KILL,
				   ev[OOM_KILL]);
		/* ALLOCSTALL_* has one counter per zone type, in zone order */
		for (z = 0; z < MAX_NR_ZONES; z++)
			stalls += ev[ALLOCSTALL_NORMAL - ZONE_NORMAL + z];
		idx = ubv_put_stat(vb, idx, VIRTIO_BALLOON_S_ALLOC_STALL,
				   stalls);
		idx = ubv_put_stat(vb, idx, VIRTIO_BALLOON_S_ASYNC_SCAN,
				   (u64)ev[PGSCAN_KSWAPD] << PAGE_SHIFT);
		idx = ubv_put_stat(vb, idx, VIRTIO_BALLOON_S_DIRECT_SCAN,
				   (u64)ev[PGSCAN_DIRECT] << PAGE_SHIFT);
		idx = ubv_put_stat(vb, idx, VIRTIO_BALLOON_S_ASYNC_RECLAIM,
				   (u64)ev[PGSTEAL_KSWAPD] << PAGE_SHIFT);
		idx = ubv_put_stat(vb, idx, VIRTIO_BALLOON_S_DIRECT_RECLAIM,
				   (u64)ev[PGSTEAL_DIRECT] << PAGE_SHIFT);
	}
#endif
	idx = ubv_put_stat(vb, idx, VIRTIO_BALLOON_S_MEMFREE,
			   (u64)i.freeram * i.mem_unit);
	idx = ubv_put_stat(vb, idx, VIRTIO_BALLOON_S_MEMTOT,
			   (u64)i.totalram * i.mem_unit);
	idx = ubv_put_stat(vb, idx, VIRTIO_BALLOON_S_AVAIL,
			   (u64)si_mem_available() << PAGE_SHIFT);
	idx = ubv_put_stat(vb, idx, VIRTIO_BALLOON_S_CACHES,
			   (u64)global_node_page_state(NR_FILE_PAGES) <<
			   PAGE_SHIFT);
	return idx;
}

/* The host returns the stats buffer when it wants fresh numbers. */
static void ubv_send_stats(struct ub_virtio *vb)
{
	struct virtqueue *vq = vb->vqs[UBV_VQ_STATS];
	struct scatterlist sg;
	unsigned int n = ubv_fill_stats(vb);

	sg_init_one(&sg, vb->stats, sizeof(vb->stats[0]) * n);
	/* the queue holds only this buffer: adding it cannot fail */
	if (virtqueue_add_outbuf(vq, &sg, 1, vb, GFP_KERNEL))
		ub_backend_error("stats", -ENOSPC);
	virtqueue_kick(vq);
}

static void ubv_stats_work(struct work_struct *work)
{
	struct ub_virtio *vb = container_of(work, struct ub_virtio,
					    stats_work);
	unsigned int len;

	if (!virtqueue_get_buf(vb->vqs[UBV_VQ_STATS], &len))
		return;
	vb->stats_requests++;
	ubv_send_stats(vb);
}

static int ubv_debugfs_show(void *priv, struct seq_file *m)
{
	struct ub_virtio *vb = priv;
	struct virtio_device *vdev = vb->vdev;

	seq_puts(m, "backend: virtio\n");
	seq_printf(m, "device: %s\n", dev_name(&vdev->dev));
	seq_printf(m, "version_1: %d\n",
		   virtio_has_feature(vdev, VIRTIO_F_VERSION_1));
	seq_printf(m, "must_tell_host: %d\n",
		   virtio_has_feature(vdev, VIRTIO_BALLOON_F_MUST_TELL_HOST));
	seq_printf(m, "stats_vq: %d\n",
		   virtio_has_feature(vdev, VIRTIO_BALLOON_F_STATS_VQ));
	seq_printf(m, "deflate_on_oom: %d\n",
		   virtio_has_feature(vdev, VIRTIO_BALLOON_F_DEFLATE_ON_OOM));
	seq_printf(m, "frames_per_request: %lu\n",
		   UBV_BATCH * UBV_FRAMES_PER_PAGE);
	seq_printf(m, "inflate_requests: %llu\n", vb->inflate_requests);
	seq_printf(m, "deflate_requests: %llu\n", vb->deflate_requests);
	seq_printf(m, "frames_inflated: %llu\n", vb->frames_inflated);
	seq_printf(m, "frames_deflated: %llu\n", vb->frames_deflated);
	seq_printf(m, "stats_requests: %llu\n", vb->stats_requests);
	seq_printf(m, "config_changes: %llu\n", vb->config_changes);
	seq_printf(m, "broken_waits: %llu\n", vb->broken_waits);
	seq_printf(m, "free_page_hint: %d\n", vb->hinting);
	seq_printf(m, "hint_cmd_id: %u\n",
		   virtio32_to_cpu(vdev, vb->hint_start));
	seq_printf(m, "hint_order: %u\n", UBV_HINT_ORDER);
	seq_printf(m, "hint_commands: %llu\n", vb->hint_commands);
	seq_printf(m, "hinted_blocks: %llu\n", vb->hinted_blocks);
	seq_printf(m, "hinted_blocks_held: %lu\n", vb->hinted_held);
	seq_printf(m, "hint_releases: %llu\n", vb->hint_releases);
	seq_printf(m, "hint_errors: %llu\n", vb->hint_errors);
	seq_printf(m, "hint_end_reason: %d\n", vb->hint_end_reason);
	seq_printf(m, "page_poison: %d\n",
		   virtio_has_feature(vdev, VIRTIO_BALLOON_F_PAGE_POISON));
	seq_printf(m, "poison_val: 0x%08x\n", vb->poison_val);
	seq_printf(m, "free_page_reporting: %d\n",
		   virtio_has_feature(vdev, VIRTIO_BALLOON_F_REPORTING));
#ifdef CONFIG_PAGE_REPORTING
	seq_printf(m, "reporting_active: %d\n", vb->reporting_on);
	seq_printf(m, "reports: %llu\n", vb->reports);
	seq_printf(m, "reported_bytes: %llu\n", vb->reported_bytes);
	seq_printf(m, "report_errors: %llu\n", vb->report_errors);
#endif
	return 0;
}

static const struct ub_backend_ops ubv_ops = {
	.name		= "virtio",
	.batch_max	= UBV_BATCH,
	.inflate	= ubv_inflate,
	.deflate	= ubv_deflate,
	.report_size	= ubv_report_size,
	.debugfs_show	= ubv_debugfs_show,
};

/* Name of queue @i, or NULL if its feature was not negotiated. */
static const char *ubv_vq_name(struct virtio_device *vdev, unsigned int i)
{
	switch (i) {
	case UBV_VQ_INFLATE:
		return "inflate";
	case UBV_VQ_DEFLATE:
		return "deflate";
	case UBV_VQ_STATS:
		return virtio_has_feature(vdev, VIRTIO_BALLOON_F_STATS_VQ) ?
		       "stats" : NULL;
	case UBV_VQ_FREE_PAGE:
		return virtio_has_feature(vdev,
					  VIRTIO_BALLOON_F_FREE_PAGE_HINT) ?
		       "free_page" : NULL;
	case UBV_VQ_REPORTING:
		return virtio_has_feature(vdev, VIRTIO_BALLOON_F_REPORTING) ?
		       "reporting" : NULL;
	}
	return NULL;
}

/* The free page queue needs no interrupts: used ids are reaped later. */
static vq_callback_t *ubv_vq_callback(unsigned int i)
{
	switch (i) {
	case UBV_VQ_STATS:
		return ubv_stats_requested;
	case UBV_VQ_FREE_PAGE:
		return NULL;
	}
	return ubv_ack;
}

static int ubv_find_vqs(struct ub_virtio *vb)
{
	struct virtio_device *vdev = vb->vdev;
	unsigned int i;
#ifdef UB_HAVE_VIRTQUEUE_INFO
	struct virtqueue_info info[UBV_NR_VQS];

	for (i = 0; i < UBV_NR_VQS; i++) {
		info[i].name = ubv_vq_name(vdev, i);
		info[i].callback = ubv_vq_callback(i);
		info[i].ctx = false;
	}
	return virtio_find_vqs(vdev, UBV_NR_VQS, vb->vqs, info, NULL);
#else
	vq_callback_t *callbacks[UBV_NR_VQS];
	const char *names[UBV_NR_VQS];

	for (i = 0; i < UBV_NR_VQS; i++) {
		names[i] = ubv_vq_name(vdev, i);
		callbacks[i] = ubv_vq_callback(i);
	}
	return virtio_find_vqs(vdev, UBV_NR_VQS, vb->vqs, callbacks, names,
			       NULL);
#endif
}

/* Bring the queues up and hand the device to the engine. */
static int ubv_start(struct ub_virtio *vb)
{
	struct virtio_device *vdev = vb->vdev;
	bool stats = virtio_has_feature(vdev, VIRTIO_BALLOON_F_STATS_VQ);
	unsigned long features = 0;
	int err;

	err = ubv_find_vqs(vb);
	if (err)
		return err;
	if (virtio_has_feature(vdev, VIRTIO_BALLOON_F_MUST_TELL_HOST))
		features |= UB_FEAT_TELL_HOST;
	if (virtio_has_feature(vdev, VIRTIO_BALLOON_F_DEFLATE_ON_OOM))
		features |= UB_FEAT_OOM_DEFLATE;
	if (stats)
		features |= UB_FEAT_STATS;

	/* before DRIVER_OK: the host reads it when reporting starts */
	ubv_write_poison_val(vb);
	vb->stopping = false;
	virtio_device_ready(vdev);
	if (ubv_start_reporting(vb))
		features |= UB_FEAT_FREE_PAGE_REPORTING;
	ubv_start_hinting(vb);
	if (vb->hinting)
		features |= UB_FEAT_FREE_PAGE_HINT;
	err = ub_attach(&ubv_ops, vb, features);
	if (err) {
		vb->hinting = false;
		ubv_stop_reporting(vb);
		virtio_reset_device(vdev);
		vdev->config->del_vqs(vdev);
		return err;
	}
	if (stats)
		ubv_send_stats(vb);
	/* the host may have asked for memory before we were here */
	ubv_queue(vb, &vb->config_work);
	if (vb->hinting)
		ubv_queue(vb, &vb->hint_work);
	return 0;
}

/* Give every page back (telling the host), then silence the device. */
static void ubv_stop(struct ub_virtio *vb)
{
	spin_lock_irq(&vb->stop_lock);
	vb->stopping = true;
	spin_unlock_irq(&vb->stop_lock);
	cancel_work_sync(&vb->config_work);
	cancel_work_sync(&vb->stats_work);
	cancel_work_sync(&vb->hint_work);
	ubv_stop_reporting(vb);

	ub_detach();
	virtio_reset_device(vb->vdev);
	vb->vdev->config->del_vqs(vb->vdev);
	/* the device is gone: hinted blocks are ours again */
	ubv_hint_release(vb);
	vb->hinting = false;
}

static int ubv_probe(struct virtio_device *vdev)
{
	struct ub_virtio *vb;
	int err;

	if (!vdev->config->get) {
		dev_err(&vdev->dev, "device has no config space\n");
		return -EINVAL;
	}
	vb = kzalloc(sizeof(*vb), GFP_KERNEL);
	if (!vb)
		return -ENOMEM;
	vb->vdev = vdev;
	vdev->priv = vb;
	init_waitqueue_head(&vb->acked);
	spin_lock_init(&vb->stop_lock);
	INIT_WORK(&vb->config_work, ubv_config_work);
	INIT_WORK(&vb->stats_work, ubv_stats_work);
	INIT_WORK(&vb->hint_work, ubv_hint_work);
	INIT_LIST_HEAD(&vb->hinted);

	err = ubv_start(vb);
	if (err) {
		dev_err(&vdev->dev, "cannot start: %d\n", err);
		kfree(vb);
		return err;
	}
	ubv_bound = vb;
	dev_info(&vdev->dev, "uniballoon drives this virtio balloon\n");
	return 0;
}

static void ubv_remove(struct virtio_device *vdev)
{
	struct ub_virtio *vb = vdev->priv;

	ubv_stop(vb);
	ubv_bound = NULL;
	kfree(vb);
}

#ifdef CONFIG_PM_SLEEP
/*
 * Like the in-tree driver, hand every page back before sleeping: the host
 * may not keep its view of the balloon across a suspend.
 */
static int ubv_freeze(struct virtio_device *vdev)
{
	ubv_stop(vdev->priv);
	return 0;
}

static int ubv_restore(struct virtio_device *vdev)
{
	return ubv_start(vdev->priv);
}
#endif

/*
 * PAGE_POISON only when freed pages have a known content. If they do and
 * the host cannot be told, no free page reporting: the host would hand
 * reported pages back zeroed, which the poison checks take for corruption.
 *
 * The device reads buffers by guest physical address: no platform DMA
 * translation. No indirect descriptors either, so that a free page report
 * never needs to allocate memory.
 */
static int ubv_validate(struct virtio_device *vdev)
{
	if (!ubv_guest_zeroes() && !ubv_guest_poisons())
		__virtio_clear_bit(vdev, VIRTIO_BALLOON_F_PAGE_POISON);
	else if (!virtio_has_feature(vdev, VIRTIO_BALLOON_F_PAGE_POISON))
		__virtio_clear_bit(vdev, VIRTIO_BALLOON_F_REPORTING);
	__virtio_clear_bit(vdev, VIRTIO_RING_F_INDIRECT_DESC);
	__virtio_clear_bit(vdev, VIRTIO_F_ACCESS_PLATFORM);
	return 0;
}

static unsigned int ubv_features[] = {
	VIRTIO_BALLOON_F_MUST_TELL_HOST,
	VIRTIO_BALLOON_F_STATS_VQ,
	VIRTIO_BALLOON_F_DEFLATE_ON_OOM,
	VIRTIO_BALLOON_F_FREE_PAGE_HINT,
	VIRTIO_BALLOON_F_PAGE_POISON,
#ifdef CONFIG_PAGE_REPORTING
	VIRTIO_BALLOON_F_REPORTING,
#endif
};

static const struct virtio_device_id ubv_ids[] = {
	{ VIRTIO_ID_BALLOON, VIRTIO_DEV_ANY_ID },
	{ 0 },
};
MODULE_DEVICE_TABLE(virtio, ubv_ids);

static struct virtio_driver ubv_driver = {
	.driver.name		= KBUILD_MODNAME,
	.id_table		= ubv_ids,
	.feature_table		= ubv_features,
	.feature_table_size	= ARRAY_SIZE(ubv_features),
	.feature_table_legacy	= ubv_features,
	.feature_table_size_legacy = ARRAY_SIZE(ubv_features),
	.validate		= ubv_validate,
	.probe			= ubv_probe,
	.remove			= ubv_remove,
	.config_changed		= ubv_config_changed,
#ifdef CONFIG_PM_SLEEP
	.freeze			= ubv_freeze,
	.restore		= ubv_restore,
#endif
};

/* Report balloon devices that another driver (virtio_balloon) holds. */
static int ubv_check_owner(struct device *dev, void *unused)
{
	struct virtio_device *vdev = dev_to_virtio(dev);
	struct device_driver *drv = READ_ONCE(dev->driver);

	if (vdev->id.device == VIRTIO_ID_BALLOON && drv &&
	    drv != &ubv_driver.driver)
		pr_warn("%s: virtio balloon device is owned by driver '%s': run 'rmmod %s' and load uniballoon again to take it over\n",
			dev_name(dev), drv->name, drv->name);
	return 0;
}

/*
 * Devices present now are probed during registration. Unless the user
 * forced this backend (and so waits for a hot-plugged device), finding none
 * means this is not our machine.
 */
int ub_virtio_init(bool forced)
{
	int err = register_virtio_driver(&ubv_driver);

	if (err)
		return err;
	if (!ubv_bound && !forced) {
		bus_for_each_dev(ubv_driver.driver.bus, NULL, NULL,
				 ubv_check_owner);
		unregister_virtio_driver(&ubv_driver);
		return -ENODEV;
	}
	return 0;
}

void ub_virtio_exit(void)
{
	unregister_virtio_driver(&ubv_driver);
}
