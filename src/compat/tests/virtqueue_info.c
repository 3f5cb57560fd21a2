// SPDX-License-Identifier: GPL-2.0
/* Linux 6.11: virtio_find_vqs() takes an array of struct virtqueue_info. */
#include <linux/module.h>
#include <linux/virtio_config.h>

static int __maybe_unused test(struct virtio_device *vdev,
			       struct virtqueue **vqs)
{
	struct virtqueue_info info[1] = { { "test", NULL } };

	return virtio_find_vqs(vdev, 1, vqs, info, NULL);
}
MODULE_LICENSE("GPL");
