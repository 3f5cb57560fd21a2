// SPDX-License-Identifier: GPL-2.0
/*
 * uniballoon: module entry, the backend registry and hypervisor detection.
 *
 * Exactly one backend is active. Backends that sit on a bus (virtio) find
 * their device through it; the others will be chosen by what the CPU and
 * the firmware say the hypervisor is.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/string.h>

#include "uniballoon.h"

struct ub_backend_desc {
	const char *name;
	/*
	 * Start if this is our hypervisor (each backend knows how to tell);
	 * @forced: the user chose it, so skip detection.
	 */
	int (*init)(bool forced);
	void (*exit)(void);
};

/* In the order autodetection tries them. */
static const struct ub_backend_desc ub_backends[] = {
#ifdef CONFIG_X86
	{ "vmware", ub_vmware_init, ub_vmware_exit },
#endif
#ifdef CONFIG_XEN
	/* before virtio: a dom0 sees QEMU's virtio-balloon device too */
	{ "xen", ub_xen_init, ub_xen_exit },
#endif
	{ "virtio", ub_virtio_init, ub_virtio_exit },
};

static char *backend = "auto";
module_param(backend, charp, 0444);
MODULE_PARM_DESC(backend, "auto (default) or one of: vmware, xen, virtio");

static const struct ub_backend_desc *ub_active;

static int ub_try_backend(const struct ub_backend_desc *desc, bool forced)
{
	int err;

	err = desc->init(forced);
	if (err)
		return err;
	ub_active = desc;
	pr_info("using the %s backend%s\n", desc->name,
		forced ? " (forced by backend=)" : "");
	return 0;
}

static int ub_choose_backend(void)
{
	bool automatic = !strcmp(backend, "auto");
	int i, err = -ENODEV;

	for (i = 0; i < ARRAY_SIZE(ub_backends); i++) {
		if (!automatic && strcmp(backend, ub_backends[i].name))
			continue;
		err = ub_try_backend(&ub_backends[i], !automatic);
		if (!err || !automatic)
			return err;
		if (err != -ENODEV)
			pr_warn("backend %s: error %d, trying the next\n",
				ub_backends[i].name, err);
	}
	if (automatic)
		pr_info("no supported balloon device or hypervisor found\n");
	else if (i == ARRAY_SIZE(ub_backends))
		pr_err("backend=%s: unknown backend\n", backend);
	return automatic ? -ENODEV : -EINVAL;
}

static int __init ub_init(void)
{
	int err;

	err = ub_params_check() ?: ub_engine_init();
	if (err)
		return err;
	err = ub_sysfs_init();
	if (err)
		goto out_engine;
	ub_debugfs_init();
	err = ub_oom_init();
	if (err)
		goto out_debugfs;
	err = ub_choose_backend();
	if (err)
		goto out_oom;
	return 0;

out_oom:
	ub_oom_exit();
out_debugfs:
	ub_debugfs_exit();
	ub_sysfs_exit();
out_engine:
	ub_engine_exit();
	return err;
}

static void __exit ub_exit(void)
{
	ub_active->exit();
	ub_oom_exit();
	ub_debugfs_exit();
	ub_sysfs_exit();
	ub_engine_exit();
}

module_init(ub_init);
module_exit(ub_exit);

MODULE_DESCRIPTION("One memory balloon for virtio, VMware and Xen guests");
MODULE_AUTHOR("The uniballoon developers");
MODULE_LICENSE("GPL");
MODULE_VERSION(UB_VERSION);
