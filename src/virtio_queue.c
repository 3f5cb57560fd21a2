// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-balloon inflate and deflate requests: frame numbers in buffers of
 * one page, several in flight per batch.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include "virtio.h"


#ifdef UB_TEST_BUILD
/*
 * Test builds: a host that stops answering. While test_mute_host is set,
 * inflate and deflate requests are queued but the device is not told, so
 * they stay in flight; once it is cleared, the next wait tells it.
 */
static bool ubv_test_mute;
module_param_named(test_mute_host, ubv_test_mute, bool, 0644);

/* Test builds: a longer wait for the host, in seconds (0: UBV_HOST_TIMEOUT). */
static unsigned int ubv_test_timeout;
module_param_named(test_host_timeout, ubv_test_timeout, uint, 0644);

static unsigned long ubv_host_timeout(void)
{
	unsigned int secs = READ_ONCE(ubv_test_timeout);

	return secs ? secs * HZ : UBV_HOST_TIMEOUT;
}

static void ubv_notify(struct virtqueue *vq)
{
	if (!READ_ONCE(ubv_test_mute))
		virtqueue_kick(vq);
}

static void ubv_test_unmute(struct ub_virtio *vb)
{
	if (!READ_ONCE(ubv_test_mute)) {
		virtqueue_kick(vb->vqs[UBV_VQ_INFLATE]);
		virtqueue_kick(vb->vqs[UBV_VQ_DEFLATE]);
	}
}

static void ubv_test_unmute_vq(struct virtqueue *vq)
{
	if (!READ_ONCE(ubv_test_mute))
		virtqueue_kick(vq);
}
#else
static void ubv_notify(struct virtqueue *vq)
{
	virtqueue_kick(vq);
}

static unsigned long ubv_host_timeout(void)
{
	return UBV_HOST_TIMEOUT;
}

static void ubv_test_unmute(struct ub_virtio *vb)
{
}

static void ubv_test_unmute_vq(struct virtqueue *vq)
{
}
#endif

#ifdef CONFIG_PAGE_REPORTING
/*
 * Notify the host of the free page report just queued and wait until it
 * used it, or until the device was reset under it (ubv_stop_reporting):
 * the blocks go back to the free lists when this returns, so it must not
 * return while the host may still discard them.
 */
int ubv_report_wait(struct ub_virtio *vb, struct virtqueue *vq)
{
	unsigned int len;

	ubv_notify(vq);
	while (!wait_event_timeout(vb->acked, virtqueue_get_buf(vq, &len) ||
				   virtqueue_is_broken(vq) ||
				   READ_ONCE(vb->report_abandon), HZ))
		ubv_test_unmute_vq(vq);
	if (READ_ONCE(vb->report_abandon))
		return -ENODEV;
	if (virtqueue_is_broken(vq)) {
		vb->broken_waits++;
		return -EIO;
	}
	return 0;
}
#endif

/* Requests in flight on @vq, the inflate or the deflate queue. */
static unsigned int *ubv_in_flight(struct ub_virtio *vb, struct virtqueue *vq)
{
	return &vb->in_flight[vq == vb->vqs[UBV_VQ_INFLATE] ?
			      UBV_VQ_INFLATE : UBV_VQ_DEFLATE];
}

/* Collect the requests the host is done with on @vq; true once none is left. */
static bool ubv_reap(struct ub_virtio *vb, struct virtqueue *vq)
{
	unsigned int *in_flight = ubv_in_flight(vb, vq);
	unsigned int len;

	while (*in_flight && virtqueue_get_buf(vq, &len))
		(*in_flight)--;
	return !*in_flight || virtqueue_is_broken(vq);
}

static bool ubv_reap_all(struct ub_virtio *vb)
{
	/* both, so that one queue's requests cannot hide the other's */
	return ubv_reap(vb, vb->vqs[UBV_VQ_INFLATE]) &
	       ubv_reap(vb, vb->vqs[UBV_VQ_DEFLATE]);
}

/*
 * Sleep until the host has used every inflate and deflate request in
 * flight, for at most @timeout. On a timeout the requests stay in
 * flight (the host may still read their buffers), so no buffer is reused
 * and the next exchange waits for them first; the caller keeps the pages
 * as they were. A broken queue returns nothing: its buffers are ours again.
 */
static int ubv_wait_all(struct ub_virtio *vb, unsigned long timeout)
{
	unsigned int i;

	ubv_test_unmute(vb);
	if (!wait_event_timeout(vb->acked, ubv_reap_all(vb), timeout)) {
		if (timeout)	/* a look (settle's poll) is no timeout */
			vb->host_timeouts++;
		return -ETIMEDOUT;
	}
	for (i = 0; i < ARRAY_SIZE(vb->in_flight); i++) {
		if (vb->in_flight[i]) {
			vb->in_flight[i] = 0;
			vb->broken_waits++;
			return -EIO;
		}
	}
	vb->reqs_used = 0;
	return 0;
}

/* A free request buffer; waits for the host when all are in flight. */
static int ubv_next_buffer(struct ub_virtio *vb, __virtio32 **frames)
{
	int err = vb->reqs_used == UBV_MAX_REQS ?
		  ubv_wait_all(vb, ubv_host_timeout()) : 0;

	if (!err)
		*frames = vb->reqs[vb->reqs_used]->frames;
	return err;
}

/* Queue the @n frames just written to the next buffer; the host starts now. */
static int ubv_queue_request(struct ub_virtio *vb, struct virtqueue *vq,
			     unsigned int n)
{
	unsigned int *in_flight;
	struct scatterlist sg;
	int err;

	sg_init_one(&sg, vb->reqs[vb->reqs_used]->frames,
		    n * sizeof(__virtio32));
	err = virtqueue_add_outbuf(vq, &sg, 1, vb, GFP_KERNEL);
	if (err == -ENOSPC) {
		/* a small ring: let the host catch up, then there is room */
		err = ubv_wait_all(vb, ubv_host_timeout()) ?:
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
	in_flight = ubv_in_flight(vb, vq);
	(*in_flight)++;
	vb->max_in_flight = max(vb->max_in_flight, *in_flight);
	ubv_notify(vq);
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

		err = ubv_next_buffer(vb, &frames);
		if (err)
			return err;
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

/*
 * Send @batch and wait until the host has used it all. Requests a timed
 * out exchange left in flight are waited for first: their buffers are
 * reused only once the host is done with them.
 */
static long ubv_tell_host(struct ub_virtio *vb, struct virtqueue *vq,
			  struct ub_batch *batch)
{
	unsigned long timeout = batch->timeout ?: ubv_host_timeout();
	long sent;
	int err;

	if (vb->reqs_used) {
		err = ubv_wait_all(vb, timeout);
		if (err)
			return err;
	}
	sent = ubv_send_pages(vb, vq, batch);
	err = ubv_wait_all(vb, timeout);
	if (sent < 0)
		return sent;
	return err ?: sent;
}

/*
 * The engine's settle(): 0 once the host has used every request in flight
 * (a broken queue's buffers are ours again: the device has stopped).
 */
int ubv_settle(void *priv, unsigned long timeout)
{
	struct ub_virtio *vb = priv;

	if (!vb->reqs_used)
		return 0;
	return ubv_wait_all(vb, timeout) == -ETIMEDOUT ? -ETIMEDOUT : 0;
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

