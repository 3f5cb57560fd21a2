// SPDX-License-Identifier: GPL-2.0
/*
 * VMware balloon backend: the host is polled for its target once a second
 * and takes pages one at a time (basic commands) or in batches of up to 512
 * entries of 4 KiB or 2 MiB pages. The host may refuse single pages, answer
 * BUSY, or demand a RESET, after which it holds none of our pages.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/debugfs.h>
#include <linux/gfp.h>
#include <linux/kobject.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/notifier.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/vmw_vmci_defs.h>

#include "uniballoon.h"
#include "vmware_proto.h"
#include "vmware_transport.h"

/* What we ask for; the doorbell is used only where vmw_vmci is loaded. */
#define UBW_CAPS_WANTED	(UBW_CAP_BASIC | UBW_CAP_BATCHED | \
			 UBW_CAP_BATCHED_2M | UBW_CAP_SIGNALLED_WAKEUP | \
			 UBW_CAP_64BIT_TARGET)

struct ub_vmware {
	unsigned long caps;		/* granted by the last START */
	u64 *entries;			/* the batch page */
	u64 calls[UBW_CMD_NR];
	u64 failures[UBW_CMD_NR];
	u64 entry_status[UBW_NR_STATUS];	/* refusals by status */
	u64 starts;

	/* the VMCI doorbell the host rings when the target changes */
	struct vmci_handle doorbell;
	bool doorbell_made;
	bool doorbell_set;
	atomic64_t rings;
};

static struct ub_vmware *ubw;
static struct dentry *ubw_vmmemctl_file;

/*
 * Is a driver for the same host loaded (ubw_intree_names: vmw_balloon)? A
 * module is in the kernel's kset of modules (/sys/module/NAME, where ours
 * is too) from before its init runs until it is freed, as is a built-in
 * vmw_balloon (it has a parameter); find_module() is not exported.
 */
static bool ubw_intree_loaded(void)
{
	/* an out-of-tree module is never built in: THIS_MODULE is ours */
	struct kset *modules = THIS_MODULE->mkobj.kobj.kset;
	struct kobject *kobj;
	int i;

	if (!modules)		/* no sysfs; the notifier below still holds */
		return false;
	for (i = 0; i < ubw_nr_intree_names; i++) {
		kobj = kset_find_obj(modules, ubw_intree_names[i]);
		if (kobj) {
			kobject_put(kobj);
			return true;
		}
	}
	return false;
}

/* While we hold the balloon, vmw_balloon does not load. */
static int ubw_module_coming(struct notifier_block *nb, unsigned long state,
			     void *data)
{
	struct module *mod = data;
	int i;

	if (state != MODULE_STATE_COMING)
		return NOTIFY_DONE;
	for (i = 0; i < ubw_nr_intree_names; i++) {
		if (strcmp(mod->name, ubw_intree_names[i]))
			continue;
		pr_warn("vmware: %s refused: the balloon is owned by uniballoon; 'rmmod uniballoon' first\n",
			mod->name);
		return notifier_from_errno(-EBUSY);
	}
	return NOTIFY_DONE;
}

static struct notifier_block ubw_module_nb = {
	.notifier_call = ubw_module_coming,
};

/* One command, counted; the raw status is returned. */
static unsigned long ubw_cmd(struct ub_vmware *b, unsigned int cmd,
			     unsigned long arg1, unsigned long arg2,
			     unsigned long *result, unsigned long *caps)
{
	unsigned long status, res = 0, ecx = 0;

	b->calls[cmd]++;
	status = ubw_hypercall(cmd, arg1, arg2, &res, &ecx);
	if (status != UBW_SUCCESS &&
	    !(cmd == UBW_CMD_START && status == UBW_SUCCESS_WITH_CAPS))
		b->failures[cmd]++;
	if (result)
		*result = res;
	if (caps)
		*caps = ecx;
	return status;
}

static int ubw_errno(unsigned long status)
{
	switch (status) {
	case UBW_SUCCESS:
		return 0;
	case UBW_RESET:
		return -ECONNRESET;
	case UBW_BUSY:
		return -EBUSY;
	default:
		return -EIO;
	}
}

/* The host rang: ask for the target now rather than at the next poll. */
static void ubw_doorbell_rung(void *data)
{
	struct ub_vmware *b = data;

	atomic64_inc(&b->rings);
	ub_poll_now();
}

/*
 * Give the host our doorbell if it offers to ring one. Without it (not
 * granted, or no vmw_vmci) the once-a-second poll does the job alone.
 */
static void ubw_doorbell_connect(struct ub_vmware *b)
{
	unsigned long status;

	b->doorbell_set = false;
	if (!(b->caps & UBW_CAP_SIGNALLED_WAKEUP))
		return;
	if (!b->doorbell_made &&
	    ubw_doorbell_create(&b->doorbell, ubw_doorbell_rung, b))
		return;
	b->doorbell_made = true;
	status = ubw_cmd(b, UBW_CMD_VMCI_DOORBELL_SET, b->doorbell.context,
			 b->doorbell.resource, NULL, NULL);
	b->doorbell_set = status == UBW_SUCCESS;
}

static void ubw_doorbell_disconnect(struct ub_vmware *b)
{
	if (b->doorbell_set)
		ubw_cmd(b, UBW_CMD_VMCI_DOORBELL_SET, VMCI_INVALID_ID,
			VMCI_INVALID_ID, NULL, NULL);
	b->doorbell_set = false;
}

/* START and GUEST_ID: what the host expects after load and after a reset. */
static int ubw_restart(void *priv)
{
	struct ub_vmware *b = priv;
	unsigned long status, caps;

	/* after a reset too: a START takes the balloon from whoever has it */
	if (ubw_intree_loaded()) {
		pr_warn_once("vmware: vmw_balloon is loaded: the balloon stays stopped while it is\n");
		return -EBUSY;
	}
	b->starts++;
	status = ubw_cmd(b, UBW_CMD_START, UBW_CAPS_WANTED, 0, NULL, &caps);
	if (status == UBW_SUCCESS)
		caps = UBW_CAP_BASIC;		/* an old host */
	else if (status != UBW_SUCCESS_WITH_CAPS)
		return ubw_errno(status);
	b->caps = caps & UBW_CAPS_WANTED;
	/* without the batched commands 2 MiB pages are not used */
	if (!(b->caps & UBW_CAP_BATCHED))
		b->caps &= ~UBW_CAP_BATCHED_2M;
	if (!(b->caps & (UBW_CAP_BASIC | UBW_CAP_BATCHED)))
		return -EIO;
	status = ubw_cmd(b, UBW_CMD_GUEST_ID, UBW_GUEST_LINUX, 0, NULL, NULL);
	if (status != UBW_SUCCESS)
		return ubw_errno(status);
	ubw_doorbell_connect(b);
	return 0;
}

static int ubw_poll(void *priv, unsigned long *target)
{
	struct ub_vmware *b = priv;
	unsigned long limit = totalram_pages(), status;

	/* a host without 64-bit targets takes 32-bit arguments only */
	if (!(b->caps & UBW_CAP_64BIT_TARGET) && limit > U32_MAX)
		limit = U32_MAX;
	status = ubw_cmd(b, UBW_CMD_GET_TARGET, limit, 0, target, NULL);
	return ubw_errno(status);
}

static bool ubw_huge_ready(void *priv)
{
	struct ub_vmware *b = priv;

	return b->caps & UBW_CAP_BATCHED_2M;
}

/* Per-entry result: refused pages stay aside; NOTNEEDED ends the cycle. */
static void ubw_entry_result(struct ub_vmware *b, struct ub_batch *batch,
			     unsigned int i, unsigned long status)
{
	if (status == UBW_SUCCESS)
		return;
	batch->refused[i] = true;
	b->entry_status[min_t(unsigned long, status, UBW_NR_STATUS - 1)]++;
	if (status == UBW_PPN_NOTNEEDED)
		batch->stop = true;
}

static int ubw_batched(struct ub_vmware *b, struct ub_batch *batch,
		       bool lock)
{
	unsigned int cmd, i;
	unsigned long status;

	if (batch->order)
		cmd = lock ? UBW_CMD_BATCHED_2M_LOCK : UBW_CMD_BATCHED_2M_UNLOCK;
	else
		cmd = lock ? UBW_CMD_BATCHED_LOCK : UBW_CMD_BATCHED_UNLOCK;
	for (i = 0; i < batch->count; i++)
		b->entries[i] = (u64)page_to_pfn(batch->pages[i]) << PAGE_SHIFT;
	status = ubw_cmd(b, cmd, PHYS_PFN(__pa(b->entries)), batch->count,
			 &batch->target, NULL);
	/* a failed command overrides whatever the entries say */
	if (status != UBW_SUCCESS)
		return ubw_errno(status);
	batch->has_target = true;
	for (i = 0; i < batch->count; i++)
		ubw_entry_result(b, batch, i,
				 b->entries[i] & UBW_BATCH_STATUS_MASK);
	return 0;
}

/* Basic commands: one page per call; pages must have 32-bit numbers. */
static int ubw_one_by_one(struct ub_vmware *b, struct ub_batch *batch,
			  bool lock)
{
	unsigned int cmd = lock ? UBW_CMD_LOCK : UBW_CMD_UNLOCK, i;
	unsigned long status, pfn;

	for (i = 0; i < batch->count; i++) {
		pfn = page_to_pfn(batch->pages[i]);
		if (pfn > U32_MAX) {
			ubw_entry_result(b, batch, i, UBW_PPN_INVALID);
			continue;
		}
		status = ubw_cmd(b, cmd, pfn, 0, &batch->target, NULL);
		if (status == UBW_RESET)
			return -ECONNRESET;
		if (status == UBW_SUCCESS)
			batch->has_target = true;
		ubw_entry_result(b, batch, i, status);
		if (status == UBW_BUSY || status == UBW_PPN_NOTNEEDED) {
			/* no point in asking again now: the rest waits */
			while (++i < batch->count)
				batch->refused[i] = true;
			batch->stop = true;
		}
	}
	return 0;
}

static int ubw_exchange(struct ub_vmware *b, struct ub_batch *batch,
			bool lock)
{
	if (b->caps & UBW_CAP_BATCHED)
		return ubw_batched(b, batch, lock);
	if (batch->order)
		return -EINVAL;
	return ubw_one_by_one(b, batch, lock);
}

static int ubw_inflate(void *priv, struct ub_batch *batch)
{
	return ubw_exchange(priv, batch, true);
}

static int ubw_deflate(void *priv, struct ub_batch *batch)
{
	return ubw_exchange(priv, batch, false);
}

/* Unload: a START without capabilities makes the host drop every page. */
static int ubw_shutdown(void *priv)
{
	struct ub_vmware *b = priv;
	unsigned long status;

	ubw_doorbell_disconnect(b);
	status = ubw_cmd(b, UBW_CMD_START, 0, 0, NULL, NULL);
	return status == UBW_SUCCESS || status == UBW_SUCCESS_WITH_CAPS ?
	       0 : -EIO;
}

static const char *const ubw_cmd_names[UBW_CMD_NR] = {
	[UBW_CMD_START]			= "start",
	[UBW_CMD_GET_TARGET]		= "get_target",
	[UBW_CMD_LOCK]			= "lock",
	[UBW_CMD_UNLOCK]		= "unlock",
	[UBW_CMD_GUEST_ID]		= "guest_id",
	[UBW_CMD_BATCHED_LOCK]		= "batched_lock",
	[UBW_CMD_BATCHED_UNLOCK]	= "batched_unlock",
	[UBW_CMD_BATCHED_2M_LOCK]	= "batched_2m_lock",
	[UBW_CMD_BATCHED_2M_UNLOCK]	= "batched_2m_unlock",
	[UBW_CMD_VMCI_DOORBELL_SET]	= "doorbell_set",
};

static const char *const ubw_status_names[UBW_NR_STATUS] = {
	"success", "cmd_invalid", "ppn_invalid", "ppn_locked",
	"ppn_unlocked", "ppn_pinned", "ppn_notneeded", "reset", "busy",
};

static int ubw_debugfs_show(void *priv, struct seq_file *m)
{
	struct ub_vmware *b = priv;
	int i;

	seq_puts(m, "backend: vmware\n");
	seq_printf(m, "transport: %s\n", ubw_transport_name);
	seq_printf(m, "capabilities_offered: 0x%lx\n",
		   (unsigned long)UBW_CAPS_WANTED);
	seq_printf(m, "capabilities_granted: 0x%lx\n", b->caps);
	seq_printf(m, "page_sizes: 4k%s\n",
		   b->caps & UBW_CAP_BATCHED_2M ? " 2m" : "");
	seq_printf(m, "target_notification: %s\n",
		   b->doorbell_set ? "doorbell, poll 1s" : "poll 1s");
	seq_printf(m, "doorbell_rings: %lld\n",
		   (long long)atomic64_read(&b->rings));
	seq_printf(m, "starts: %llu\n", b->starts);
	for (i = 0; i < UBW_CMD_NR; i++)
		if (ubw_cmd_names[i])
			seq_printf(m, "cmd_%s: %llu calls, %llu failed\n",
				   ubw_cmd_names[i], b->calls[i],
				   b->failures[i]);
	for (i = 1; i < UBW_NR_STATUS; i++)
		seq_printf(m, "refused_%s: %llu\n", ubw_status_names[i],
			   b->entry_status[i]);
	return 0;
}

/*
 * /sys/kernel/debug/vmmemctl with the lines of vmw_balloon's file that
 * monitoring reads (sos, collectd's vmmemctl plugin, supportconfig): the
 * host's target and the balloon's size, in 4 KiB pages, and the
 * capabilities. So replacing that driver does not blind them.
 */
static int ubw_vmmemctl_show(struct seq_file *m, void *unused)
{
	struct ub_snapshot snap;

	ub_snapshot(&snap);
	seq_printf(m, "%-22s: %#16lx\n", "balloon capabilities",
		   (unsigned long)UBW_CAPS_WANTED);
	seq_printf(m, "%-22s: %#16lx\n", "used capabilities",
		   READ_ONCE(ubw->caps));
	seq_printf(m, "%-22s: %16lu\n", "target",
		   snap.host_target << (PAGE_SHIFT - 12));
	seq_printf(m, "%-22s: %16lu\n", "current",
		   snap.size << (PAGE_SHIFT - 12));
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(ubw_vmmemctl);

static const struct ub_page_mover ubw_ops = {
	.base = {
		.name		= "vmware",
		.poll_interval	= HZ,
		.poll		= ubw_poll,
		.shutdown	= ubw_shutdown,
		.debugfs_show	= ubw_debugfs_show,
	},
	.batch_max	= UBW_BATCH_MAX,
	.inflate	= ubw_inflate,
	.deflate	= ubw_deflate,
	.huge_order	= UBW_2M_ORDER,
	/* one command per batch page: 512 2 MiB pages */
	.huge_batch_bytes = (unsigned long)UBW_BATCH_MAX << (PAGE_SHIFT + UBW_2M_ORDER),
	.huge_ready	= ubw_huge_ready,
	.restart	= ubw_restart,
	/* at its target the host would refuse a page more: unlock, then lock */
	.migrate_release_first = true,
};

int ub_vmware_init(bool forced)
{
	int err;

	err = ubw_transport_probe(forced);
	if (err)
		return err;
	/*
	 * Refuse beside vmw_balloon before the host (or the model) is
	 * touched; the notifier, there first, keeps it out from now on.
	 */
	err = register_module_notifier(&ubw_module_nb);
	if (err)
		return err;
	if (ubw_intree_loaded()) {
		pr_warn("vmware: the balloon is owned by vmw_balloon: run 'rmmod vmw_balloon' and load uniballoon again to take it over\n");
		err = -EBUSY;
		goto out_notifier;
	}
	err = ubw_transport_init();
	if (err)
		goto out_notifier;
	err = -ENOMEM;
	ubw = kzalloc(sizeof(*ubw), GFP_KERNEL);
	if (!ubw)
		goto out_transport;
	ubw->entries = (u64 *)get_zeroed_page(GFP_KERNEL);
	if (!ubw->entries)
		goto out_free;
	err = ubw_restart(ubw);
	if (err)
		goto out_page;
	/* the host may take pages back, so OOM deflation is always allowed */
	err = ub_attach_pages(&ubw_ops, ubw,
			UB_FEAT_TELL_HOST | UB_FEAT_OOM_DEFLATE);
	if (!err) {
		/* optional, as all of debugfs: a failure costs only the file */
		ubw_vmmemctl_file = debugfs_create_file("vmmemctl", 0444, NULL,
							NULL,
							&ubw_vmmemctl_fops);
		return 0;
	}
	/* the START above may have handed the host a doorbell */
	ubw_doorbell_disconnect(ubw);
	if (ubw->doorbell_made)
		ubw_doorbell_destroy(ubw->doorbell);
out_page:
	free_page((unsigned long)ubw->entries);
out_free:
	kfree(ubw);
	ubw = NULL;
out_transport:
	ubw_transport_exit();
out_notifier:
	unregister_module_notifier(&ubw_module_nb);
	return err;
}

void ub_vmware_exit(void)
{
	/* waits for readers, which look at ubw */
	debugfs_remove(ubw_vmmemctl_file);
	ubw_vmmemctl_file = NULL;
	ub_detach();
	if (ubw->doorbell_made)
		ubw_doorbell_destroy(ubw->doorbell);
	free_page((unsigned long)ubw->entries);
	kfree(ubw);
	ubw = NULL;
	ubw_transport_exit();
	/* the host has dropped our pages: vmw_balloon may have it now */
	unregister_module_notifier(&ubw_module_nb);
}

MODULE_ALIAS("dmi:*:svnVMware*:*");
MODULE_ALIAS("vmware_vmmemctl");
