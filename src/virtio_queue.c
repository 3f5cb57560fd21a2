// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-balloon inflate and deflate requests: frame numbers in buffers of
 * one page, several in flight per batch.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include "virtio.h"

/* Notify the host of the buffer just queued and wait until it used it. */
int ubv_kick_and_wait(struct ub_virtio *vb, struct virtqueue *vq)
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

/* Collect the requests the host is done with; true once none is left. */
static bool ubv_reap(struct ub_virtio *vb, struct virtqueue *vq)
{
	unsigned int len;

	while (vb->in_flight && virtqueue_get_buf(vq, &len))
		vb->in_flight--;
	return !vb->in_flight || virtqueue_is_broken(vq);
}

/* Sleep until the host has used every request in flight on @vq. */
static int ubv_wait_all(struct ub_virtio *vb, struct virtqueue *vq)
{
	wait_event(vb->acked, ubv_reap(vb, vq));
	if (vb->in_flight) {
		/* a broken queue returns nothing: its buffers are ours again */
		vb->in_flight = 0;
		vb->broken_waits++;
		return -EIO;
	}
	return 0;
}

/* A free request buffer; waits for the host when all are in flight. */
static __virtio32 *ubv_next_buffer(struct ub_virtio *vb, struct virtqueue *vq)
{
	if (vb->reqs_used == UBV_MAX_REQS) {
		if (ubv_wait_all(vb, vq))
			return NULL;
		vb->reqs_used = 0;
	}
	return vb->reqs[vb->reqs_used]->frames;
}

/* Queue the @n frames just written to the next buffer; the host starts now. */
static int ubv_queue_request(struct ub_virtio *vb, struct virtqueue *vq,
			     unsigned int n)
{
	struct scatterlist sg;
	int err;

	sg_init_one(&sg, vb->reqs[vb->reqs_used]->frames,
		    n * sizeof(__virtio32));
	err = virtqueue_add_outbuf(vq, &sg, 1, vb, GFP_KERNEL);
	if (err == -ENOSPC) {
		/* a small ring: let the host catch up, then there is room */
		err = ubv_wait_all(vb, vq) ?:
		      virtqueue_add_outbuf(vq, &sg, 1, vb, GFP_KERNEL);
	}
	if (err)
		return err;
	if (vq == vb->vqs[UBV_VQ_INFLATE]) {
		vb->inflate_requests++;
		vb->frames_inflated += n;
	} else {
		vb->deflate_requests++;
		vb->frames_deflated += n;
	}
	vb->reqs_used++;
	vb->in_flight++;
	vb->max_in_flight = max(vb->max_in_flight, vb->in_flight);
	virtqueue_kick(vq);
	return 0;
}

/*
 * Send the frame numbers of batch pages [started, count), a request per
 * buffer of frames, whole pages per request, several requests in flight.
 * Returns frames sent.
 */
static long ubv_send_pages(struct ub_virtio *vb, struct virtqueue *vq,
			   struct ub_batch *batch)
{
	unsigned int per_page = UBV_FRAMES_PER_PAGE << batch->order;
	unsigned int fit = UBV_REQ_FRAMES / per_page;
	long sent = 0;

	BUILD_BUG_ON((UBV_FRAMES_PER_PAGE << UBV_HUGE_ORDER) > UBV_REQ_FRAMES);
	while (batch->started < batch->count) {
		unsigned int pages = min(batch->count - batch->started, fit);
		unsigned int i, j, n = 0;
		__virtio32 *frames;
		int err;

		frames = ubv_next_buffer(vb, vq);
		if (!frames)
			return -EIO;
		for (i = batch->started; i < batch->started + pages; i++) {
			unsigned long first = page_to_pfn(batch->pages[i]) *
					      UBV_FRAMES_PER_PAGE;

			for (j = 0; j < per_page; j++)
				frames[n++] = cpu_to_virtio32(vb->vdev,
							      first + j);
		}
		err = ubv_queue_request(vb, vq, n);
		if (err)
			return err;
		batch->started += pages;
		sent += n;
	}
	return sent;
}

/* Send what is left of @batch and wait until the host has used it all. */
static long ubv_tell_host(struct ub_virtio *vb, struct virtqueue *vq,
			  struct ub_batch *batch)
{
	long sent = ubv_send_pages(vb, vq, batch);
	int err = ubv_wait_all(vb, vq);

	vb->reqs_used = 0;
	if (sent < 0)
		return sent;
	return err ?: sent;
}


int ubv_inflate(void *priv, struct ub_batch *batch)
{
	struct ub_virtio *vb = priv;
	long n = ubv_tell_host(vb, vb->vqs[UBV_VQ_INFLATE], batch);

	return n < 0 ? n : 0;
}

int ubv_deflate(void *priv, struct ub_batch *batch)
{
	struct ub_virtio *vb = priv;
	long n = ubv_tell_host(vb, vb->vqs[UBV_VQ_DEFLATE], batch);

	return n < 0 ? n : 0;
}

