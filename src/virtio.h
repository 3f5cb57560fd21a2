/* SPDX-License-Identifier: GPL-2.0 */
/*
 * virtio-balloon backend, shared by its files: virtio.c (the device, its
 * config space and the engine's ops), virtio_queue.c (inflate and deflate
 * requests), virtio_free.c (free page reporting, page poisoning, free page
 * hinting) and virtio_stats.c (the stats queue).
 */
#ifndef UB_VIRTIO_H
#define UB_VIRTIO_H

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
/*
 * Pages are taken 2 MiB at a time where the allocator has such blocks free
 * (the host still counts 4 KiB frames), and 4 KiB at a time otherwise.
 */
#define UBV_HUGE_ORDER		(21 - PAGE_SHIFT)
/* 4 KiB pages per batch: 8 MiB, where the in-tree driver sends 1 MiB */
#define UBV_BATCH		2048
/*
 * A request carries one page of frame numbers (4 MiB of memory); a batch
 * keeps up to UBV_MAX_REQS of them in flight, so the host works through
 * the first while the guest queues the next.
 */
#define UBV_REQ_FRAMES		(PAGE_SIZE / sizeof(__virtio32))
#define UBV_MAX_REQS		((UB_BATCH_MAX_BYTES >> UBV_FRAME_SHIFT) / \
				 UBV_REQ_FRAMES)

/*
 * The longest wait for the host to use inflate or deflate requests: the
 * engine's lock is held meanwhile, and OOM deflation waits for it.
 */
#define UBV_HOST_TIMEOUT	(5 * HZ)

/* The buffer of one inflate or deflate request: a page of frame numbers. */
struct ubv_request {
	__virtio32 frames[UBV_REQ_FRAMES];
};

/*
 * The protocol's stats tags, 0 to VIRTIO_BALLOON_S_DIRECT_RECLAIM: the uapi
 * header's VIRTIO_BALLOON_S_NR counts only those it knows (10 before 6.12).
 */
#define UBV_NR_STATS		(VIRTIO_BALLOON_S_DIRECT_RECLAIM + 1)

/* Free page hints are blocks of the largest order the buddy allocator has. */
#define UBV_HINT_ORDER		MAX_PAGE_ORDER
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
	bool running;		/* queues up and attached to the engine */

	/* config and stats requests arrive in interrupt context */
	spinlock_t stop_lock;
	bool stopping;
	struct work_struct config_work;
	struct work_struct stats_work;
	struct work_struct hint_work;

	/* inflate/deflate requests: buffers, and how many the host holds */
	struct ubv_request *reqs[UBV_MAX_REQS];
	unsigned int reqs_used;		/* buffers filled since all came back */
	unsigned int in_flight[UBV_VQ_DEFLATE + 1];	/* per queue */
	unsigned int max_in_flight;
	u64 host_timeouts;		/* waits that reached UBV_HOST_TIMEOUT */
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
	/* protects hinted and hinted_held: hint_work adds, the shrinker takes */
	spinlock_t hint_lock;
	struct list_head hinted;	/* blocks the host may skip */
	unsigned long hinted_held;	/* blocks on that list */
	struct shrinker *hint_shrinker;	/* gives them back under pressure */
	u64 hint_shrunk;		/* blocks given back by it */
	u64 hint_commands;
	u64 hinted_blocks;
	u64 hint_releases;
	u64 hint_errors;
	int hint_end_reason;		/* why the last round ended */

#ifdef CONFIG_PAGE_REPORTING
	/* free page reporting: the kernel hands us free blocks to report */
	struct page_reporting_dev_info reporting;
	bool reporting_on;
	/* under stop_lock: no report starts; one is with the host */
	bool report_stop;
	bool report_busy;
	/* the device was reset under a report: its wait ends */
	bool report_abandon;
	u64 reports_abandoned;
	u64 reports;
	u64 reported_bytes;
	u64 report_errors;
#endif
};

/* virtio.c */
void ubv_queue(struct ub_virtio *vb, struct work_struct *work);

/* virtio_queue.c */
int ubv_report_wait(struct ub_virtio *vb, struct virtqueue *vq);
int ubv_inflate(void *priv, struct ub_batch *batch);
int ubv_deflate(void *priv, struct ub_batch *batch);
int ubv_settle(void *priv, unsigned long timeout);

/* virtio_free.c */
bool ubv_guest_zeroes(void);
bool ubv_guest_poisons(void);
void ubv_write_poison_val(struct ub_virtio *vb);
bool ubv_start_reporting(struct ub_virtio *vb);
bool ubv_stop_reporting(struct ub_virtio *vb);
void ubv_start_hinting(struct ub_virtio *vb);
void ubv_hint_work(struct work_struct *work);
void ubv_hint_release(struct ub_virtio *vb);
void ubv_stop_hinting(struct ub_virtio *vb);

/* virtio_stats.c */
void ubv_send_stats(struct ub_virtio *vb);
void ubv_stats_work(struct work_struct *work);

#endif /* UB_VIRTIO_H */
