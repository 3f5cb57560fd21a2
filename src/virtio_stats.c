// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-balloon stats queue: the guest's memory statistics, sent whenever
 * the host asks for them.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include "virtio.h"

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
void ubv_send_stats(struct ub_virtio *vb)
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

void ubv_stats_work(struct work_struct *work)
{
	struct ub_virtio *vb = container_of(work, struct ub_virtio,
					    stats_work);
	unsigned int len;

	if (!virtqueue_get_buf(vb->vqs[UBV_VQ_STATS], &len))
		return;
	vb->stats_requests++;
	ubv_send_stats(vb);
}
