// SPDX-License-Identifier: GPL-2.0
/*
 * Lab only, never packaged: stands in for vmw_balloon, which does not load
 * without a VMware host, by making /sys/kernel/debug/vmmemctl as that
 * driver does while it is loaded. uniballoon's VMware backend must refuse
 * to start while this module is loaded: test builds look for this module's
 * name as production builds look for vmw_balloon's.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/debugfs.h>
#include <linux/err.h>
#include <linux/module.h>
#include <linux/seq_file.h>

static struct dentry *standin_file;

static int standin_show(struct seq_file *m, void *unused)
{
	seq_puts(m, "stand-in for vmw_balloon (uniballoon lab)\n");
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(standin);

static int __init standin_init(void)
{
	standin_file = debugfs_create_file("vmmemctl", 0444, NULL, NULL,
					   &standin_fops);
	if (IS_ERR(standin_file))
		return PTR_ERR(standin_file);
	pr_info("/sys/kernel/debug/vmmemctl made, as vmw_balloon would\n");
	return 0;
}

static void __exit standin_exit(void)
{
	debugfs_remove(standin_file);
}

module_init(standin_init);
module_exit(standin_exit);
MODULE_DESCRIPTION("uniballoon lab: a stand-in for vmw_balloon's debugfs file");
MODULE_LICENSE("GPL");
