// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-balloon backend: speaks the virtio balloon protocol (inflate and
 * deflate queues of 32-bit frame numbers, the stats queue, the num_pages and
 * actual config fields) and leaves every decision to the engine. This file
 * holds the device: probe, queues, config space, the engine's ops.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include "virtio.h"

static struct ub_virtio *ubv_bound;	/* the one device we drive */

static void ubv_ack(struct virtqueue *vq)
{
	struct ub_virtio *vb = vq->vdev->priv;

	wake_up(&vb->acked);
}

/* Queue @work unless the device is going away. */
void ubv_queue(struct ub_virtio *vb, struct work_struct *work)
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
	seq_printf(m, "frames_per_request: %lu\n", UBV_REQ_FRAMES);
	seq_printf(m, "max_requests_in_flight: %u\n", vb->max_in_flight);
	seq_printf(m, "inflate_requests: %llu\n", vb->inflate_requests);
	seq_printf(m, "deflate_requests: %llu\n", vb->deflate_requests);
	seq_printf(m, "frames_inflated: %llu\n", vb->frames_inflated);
	seq_printf(m, "frames_deflated: %llu\n", vb->frames_deflated);
	seq_printf(m, "stats_requests: %llu\n", vb->stats_requests);
	seq_printf(m, "config_changes: %llu\n", vb->config_changes);
	seq_printf(m, "broken_waits: %llu\n", vb->broken_waits);
	seq_printf(m, "host_timeouts: %llu\n", vb->host_timeouts);
	seq_printf(m, "hint_shrunk_blocks: %llu\n", vb->hint_shrunk);
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
	seq_printf(m, "report_in_flight: %d\n", READ_ONCE(vb->report_busy));
	seq_printf(m, "reports_abandoned: %llu\n", vb->reports_abandoned);
#endif
	return 0;
}

static const struct ub_page_mover ubv_ops = {
	.base = {
		.name		= "virtio",
		.debugfs_show	= ubv_debugfs_show,
	},
	.batch_max	= UBV_BATCH,
	.inflate	= ubv_inflate,
	.deflate	= ubv_deflate,
	.settle		= ubv_settle,
	.huge_order	= UBV_HUGE_ORDER,
	.huge_splittable = true,
	.report_size	= ubv_report_size,
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
	struct virtqueue_info info[UBV_NR_VQS];

	for (i = 0; i < UBV_NR_VQS; i++) {
		info[i].name = ubv_vq_name(vdev, i);
		info[i].callback = ubv_vq_callback(i);
		info[i].ctx = false;
	}
	return virtio_find_vqs(vdev, UBV_NR_VQS, vb->vqs, info, NULL);
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
	err = ub_attach_pages(&ubv_ops, vb, features);
	if (err) {
		ubv_stop_hinting(vb);
		ubv_stop_reporting(vb);
		virtio_reset_device(vdev);
		vdev->config->del_vqs(vdev);
		return err;
	}
	vb->running = true;
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
	/*
	 * A restore that failed left no queues and nothing attached, but
	 * the device marked FAILED: only the reset the core expects is due.
	 */
	if (!vb->running) {
		virtio_reset_device(vb->vdev);
		return;
	}
	vb->running = false;
	spin_lock_irq(&vb->stop_lock);
	vb->stopping = true;
	spin_unlock_irq(&vb->stop_lock);
	cancel_work_sync(&vb->config_work);
	cancel_work_sync(&vb->stats_work);
	cancel_work_sync(&vb->hint_work);

	/*
	 * The balloon first, while the host answers; then reporting, which
	 * resets the device if the host holds a report it never answers.
	 */
	ub_detach();
	if (!ubv_stop_reporting(vb))
		virtio_reset_device(vb->vdev);
	vb->vdev->config->del_vqs(vb->vdev);
	/* the device is gone: hinted blocks are ours again */
	ubv_stop_hinting(vb);
}

static void ubv_free(struct ub_virtio *vb)
{
	unsigned int i;

	for (i = 0; i < UBV_MAX_REQS; i++)
		free_page((unsigned long)vb->reqs[i]);
	kfree(vb);
}

static struct ub_virtio *ubv_alloc(void)
{
	struct ub_virtio *vb = kzalloc(sizeof(*vb), GFP_KERNEL);
	unsigned int i;

	if (!vb)
		return NULL;
	/* a page each: a request's frames must not cross a page boundary */
	for (i = 0; i < UBV_MAX_REQS; i++) {
		vb->reqs[i] = (void *)__get_free_page(GFP_KERNEL);
		if (!vb->reqs[i]) {
			ubv_free(vb);
			return NULL;
		}
	}
	return vb;
}

static int ubv_probe(struct virtio_device *vdev)
{
	struct ub_virtio *vb;
	int err;

	if (!vdev->config->get) {
		dev_err(&vdev->dev, "device has no config space\n");
		return -EINVAL;
	}
	vb = ubv_alloc();
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
	spin_lock_init(&vb->hint_lock);

	err = ubv_start(vb);
	if (err) {
		dev_err(&vdev->dev, "cannot start: %d\n", err);
		ubv_free(vb);
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
	ubv_free(vb);
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

