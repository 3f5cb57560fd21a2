// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-balloon features about free memory: page poisoning (the host must
 * keep freed pages' content), free page reporting and free page hinting.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include "virtio.h"

/* Freed pages are zeroed (init_on_free) or filled with PAGE_POISON. */
bool ubv_guest_zeroes(void)
{
	return want_init_on_free();
}

bool ubv_guest_poisons(void)
{
	return page_poisoning_enabled_static();
}

/*
 * Tell the host what freed pages contain, so that it can keep that content
 * in pages it discards. Only the low byte matters: PAGE_POISON repeated.
 */
void ubv_write_poison_val(struct ub_virtio *vb)
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

	spin_lock_irq(&vb->stop_lock);
	err = vb->report_stop ? -ESHUTDOWN : 0;
	vb->report_busy = !err;
	spin_unlock_irq(&vb->stop_lock);
	if (err)
		return err;
	/* the queue is empty between reports and holds a full report */
	err = virtqueue_add_inbuf(vq, sgl, nents, vb, GFP_NOWAIT | __GFP_NOWARN);
	if (err)
		vb->report_errors++;
	else
		err = ubv_report_wait(vb, vq);
	if (!err) {
		for_each_sg(sgl, sg, nents, i)
			bytes += sg->length;
		vb->reports++;
		vb->reported_bytes += bytes;
	}
	spin_lock_irq(&vb->stop_lock);
	vb->report_busy = false;
	spin_unlock_irq(&vb->stop_lock);
	wake_up(&vb->acked);
	return err;
}

static bool ubv_report_busy(struct ub_virtio *vb)
{
	bool busy;

	spin_lock_irq(&vb->stop_lock);
	busy = vb->report_busy;
	spin_unlock_irq(&vb->stop_lock);
	return busy;
}

/* Returns whether reporting runs; failing to start it is not fatal. */
bool ubv_start_reporting(struct ub_virtio *vb)
{
	struct virtqueue *vq = vb->vqs[UBV_VQ_REPORTING];
	int err;

	vb->reporting_on = false;
	vb->report_stop = false;
	vb->report_busy = false;
	vb->report_abandon = false;
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

/*
 * Stop reporting within UBV_HOST_TIMEOUT, the device still working: no new
 * report starts, and the one with the host has that long to come back. A
 * host that has not used it by then may still discard its blocks, which
 * go back to the free lists when the report ends: the device is reset
 * first (it forgets the queue) and the report is abandoned. Returns true
 * if the device was reset.
 */
bool ubv_stop_reporting(struct ub_virtio *vb)
{
	bool reset = false;

	if (!vb->reporting_on)
		return false;
	spin_lock_irq(&vb->stop_lock);
	vb->report_stop = true;
	spin_unlock_irq(&vb->stop_lock);
	if (!wait_event_timeout(vb->acked, !ubv_report_busy(vb),
				UBV_HOST_TIMEOUT)) {
		dev_warn(&vb->vdev->dev,
			 "the host has not taken a free page report in %u s: resetting the device\n",
			 UBV_HOST_TIMEOUT / HZ);
		virtio_reset_device(vb->vdev);
		WRITE_ONCE(vb->report_abandon, true);
		wake_up(&vb->acked);
		vb->reports_abandoned++;
		reset = true;
	}
	page_reporting_unregister(&vb->reporting);
	vb->reporting_on = false;
	return reset;
}
#else
bool ubv_start_reporting(struct ub_virtio *vb)
{
	return false;
}

bool ubv_stop_reporting(struct ub_virtio *vb)
{
	return false;
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
		spin_lock(&vb->hint_lock);
		list_add(&page->lru, &vb->hinted);
		vb->hinted_held++;
		spin_unlock(&vb->hint_lock);
		vb->hinted_blocks++;
	}
}

/* Take up to @max hinted blocks off the list and free them; returns how many. */
static unsigned long ubv_hint_free(struct ub_virtio *vb, unsigned long max)
{
	struct page *page, *next;
	unsigned long n = 0;
	LIST_HEAD(list);

	spin_lock(&vb->hint_lock);
	list_for_each_entry_safe(page, next, &vb->hinted, lru) {
		if (n == max)
			break;
		list_move(&page->lru, &list);
		n++;
	}
	vb->hinted_held -= n;
	spin_unlock(&vb->hint_lock);
	list_for_each_entry_safe(page, next, &list, lru) {
		list_del(&page->lru);
		__free_pages(page, UBV_HINT_ORDER);
	}
	return n;
}

void ubv_hint_release(struct ub_virtio *vb)
{
	if (ubv_hint_free(vb, ULONG_MAX))
		vb->hint_releases++;
}

/*
 * Hinted blocks are free memory the guest lent the host for a migration
 * round; under memory pressure it wants them back before anything else.
 * That is safe at any time: the host skips a hinted page only until the
 * guest writes it, which migration's dirty tracking sees.
 */
/*
 * The one device with hinting on, set and cleared with cmpxchg(): its
 * shrinker finds it here. Another device (a VMM other than QEMU may offer
 * two) hints nothing, so that its failed probe frees nothing in use.
 */
static struct ub_virtio *ubv_hint_vb;

static unsigned long ubv_hint_count(struct shrinker *shrinker,
				    struct shrink_control *sc)
{
	return READ_ONCE(ubv_hint_vb->hinted_held) << UBV_HINT_ORDER;
}

static unsigned long ubv_hint_scan(struct shrinker *shrinker,
				   struct shrink_control *sc)
{
	struct ub_virtio *vb = ubv_hint_vb;
	unsigned long n;

	n = ubv_hint_free(vb, DIV_ROUND_UP(sc->nr_to_scan,
					   1UL << UBV_HINT_ORDER));
	vb->hint_shrunk += n;
	return n ? n << UBV_HINT_ORDER : SHRINK_STOP;
}

void ubv_hint_work(struct work_struct *work)
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

void ubv_start_hinting(struct ub_virtio *vb)
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
	if (cmpxchg(&ubv_hint_vb, NULL, vb)) {
		dev_warn(&vdev->dev,
			 "another balloon device hints free pages, not this one\n");
		return;
	}
	vb->hint_shrinker = shrinker_alloc(0, "uniballoon-hint");
	if (!vb->hint_shrinker) {
		dev_warn(&vdev->dev, "no memory for a shrinker, no hinting\n");
		cmpxchg(&ubv_hint_vb, vb, NULL);
		return;
	}
	vb->hint_shrinker->count_objects = ubv_hint_count;
	vb->hint_shrinker->scan_objects = ubv_hint_scan;
	shrinker_register(vb->hint_shrinker);
	vb->hint_start = cpu_to_virtio32(vdev, VIRTIO_BALLOON_CMD_ID_STOP);
	vb->hint_end = cpu_to_virtio32(vdev, VIRTIO_BALLOON_CMD_ID_STOP);
	vb->hint_id = VIRTIO_BALLOON_CMD_ID_STOP;
	set_bit(0, &vb->hint_id_stale);
	vb->hinting = true;
}

/* The device is gone or stopping: every hinted block is ours again. */
void ubv_stop_hinting(struct ub_virtio *vb)
{
	shrinker_free(vb->hint_shrinker);
	vb->hint_shrinker = NULL;
	/* no scan runs now: shrinker_free() waited for them */
	cmpxchg(&ubv_hint_vb, vb, NULL);
	ubv_hint_release(vb);
	vb->hinting = false;
}
