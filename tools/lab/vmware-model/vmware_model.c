// SPDX-License-Identifier: GPL-2.0
/*
 * TEST BUILDS ONLY: a model of the VMware balloon host, answering the
 * backdoor commands the VMware backend issues (see vmware_proto.h). It is
 * the backend's transport (src/vmware_transport.h) in test builds, in place
 * of the backdoor (src/vmware_backdoor.c); Kbuild links it into
 * uniballoon.ko from here, and never packages it.
 *
 * It keeps what the real host keeps (the target, the capabilities it
 * grants, the set of locked pages and their sizes) and checks what the
 * real host cannot: that every page it is given is one the guest really set
 * aside, and that no page is unlocked twice or with the wrong size. Through
 * /sys/kernel/debug/uniballoon_vmware_model/ a test sets the target and the
 * capabilities, and makes the host refuse pages, answer BUSY or demand a
 * RESET, also in the middle of a batch.
 */
#include <linux/debugfs.h>
#include <linux/highmem.h>
#include <linux/mm.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/page-flags.h>
#include <linux/seq_file.h>
#include <linux/vmw_vmci_defs.h>
#include <linux/xarray.h>

#include "uniballoon.h"
#include "vmware_proto.h"
#include "vmware_transport.h"

const char *const ubw_transport_name = "host model (test build)";

/*
 * Besides vmw_balloon, the lab's stand-in for it (tools/lab/vmw-standin),
 * which loads without a VMware host.
 */
const char *const ubw_intree_names[] = {
	"vmw_balloon",
	"vmw_standin",
};
const unsigned int ubw_nr_intree_names = ARRAY_SIZE(ubw_intree_names);

/* Test builds talk to the model only, and only when asked to. */
int ubw_transport_probe(bool forced)
{
	return forced ? 0 : -ENODEV;
}

static struct ubw_model {
	struct mutex lock;
	struct xarray locked;		/* pfn -> order of each locked page */
	u64 locked_frames;
	bool started;
	unsigned long granted;

	/* knobs */
	u64 target;			/* frames */
	u64 caps;			/* what the host is willing to grant */
	u32 refuse_every;		/* refuse every Nth page (PPN_PINNED) */
	u32 busy_next;			/* answer BUSY to the next N commands */
	u32 reset_after;		/* RESET after N more pages (mid-batch) */
	u32 reset_now;			/* RESET at the next command */
	u32 reset_locks;		/* RESET at every batched lock */

	/* observations */
	u64 commands;
	u64 lock_commands;		/* LOCK, batched or not */
	u64 unlock_commands;		/* UNLOCK, batched or not */
	u64 refusals;
	u64 resets;
	u64 bad_locks;			/* page not set aside, or locked twice */
	u64 bad_unlocks;		/* not locked, or with the wrong size */
	u32 page_count;			/* for refuse_every */
	struct dentry *dir;

	/* the guest's doorbell, and where the guest told us it is */
	vmci_callback ring;
	void *ring_data;
	struct vmci_handle doorbell;
} m;

/* Stands in for vmw_vmci's vmci_doorbell_create() in test builds. */
int ubw_doorbell_create(struct vmci_handle *handle, vmci_callback notify,
			void *data)
{
	m.ring = notify;
	m.ring_data = data;
	handle->context = 1;
	handle->resource = 0x42;
	return 0;
}

void ubw_doorbell_destroy(struct vmci_handle handle)
{
	m.ring = NULL;
}

static void ubw_model_forget(void)
{
	xa_destroy(&m.locked);
	m.locked_frames = 0;
}

static void ubw_model_reset(void)
{
	ubw_model_forget();
	m.started = false;
	m.resets++;
}

/* A page set aside by the guest: allocated, not mapped, not on an LRU. */
static bool ubw_model_set_aside(struct page *page)
{
	return page_count(page) >= 1 && !PageLRU(page) &&
	       !folio_mapped(page_folio(page)) && !PageSlab(page);
}

static unsigned long ubw_model_lock(unsigned long pfn, unsigned int order)
{
	if (!pfn_valid(pfn) || (pfn & ((1UL << order) - 1))) {
		m.bad_locks++;
		return UBW_PPN_INVALID;
	}
	if (!ubw_model_set_aside(pfn_to_page(pfn))) {
		m.bad_locks++;
		return UBW_PPN_INVALID;
	}
	if (xa_load(&m.locked, pfn)) {
		m.bad_locks++;
		return UBW_PPN_LOCKED;
	}
	if (m.locked_frames + (1UL << order) > m.target)
		return UBW_PPN_NOTNEEDED;
	if (m.refuse_every && ++m.page_count % m.refuse_every == 0) {
		m.refusals++;
		return UBW_PPN_PINNED;
	}
	/*
	 * No reclaim here: the exchange holds ub.exchange and m.lock, and
	 * the reclaim shrinker deflates through this model (m.lock under
	 * fs_reclaim; lockdep sees the cycle, which only the shrinker's
	 * trylock of ub.exchange breaks). A host short of memory fails the
	 * lock, which the guest takes as any host error.
	 */
	if (xa_err(xa_store(&m.locked, pfn, xa_mk_value(order),
			    GFP_NOWAIT | __GFP_NOWARN)))
		return UBW_FAILURE;
	m.locked_frames += 1UL << order;
	return UBW_SUCCESS;
}

static unsigned long ubw_model_unlock(unsigned long pfn, unsigned int order)
{
	void *entry = xa_load(&m.locked, pfn);

	if (!entry || xa_to_value(entry) != order) {
		m.bad_unlocks++;
		return UBW_PPN_UNLOCKED;
	}
	xa_erase(&m.locked, pfn);
	m.locked_frames -= 1UL << order;
	return UBW_SUCCESS;
}

/* Returns false if a RESET was demanded in the middle of this batch. */
static bool ubw_model_batch(unsigned long batch_pfn, unsigned long n,
			    bool lock, unsigned int order)
{
	u64 *entries = kmap_local_page(pfn_to_page(batch_pfn));
	unsigned long i, status;
	bool ok = true;

	for (i = 0; i < min_t(unsigned long, n, UBW_BATCH_MAX); i++) {
		unsigned long pfn = entries[i] >> PAGE_SHIFT;

		if (lock && (m.reset_locks ||
			     (m.reset_after && --m.reset_after == 0))) {
			ok = false;
			break;
		}
		status = lock ? ubw_model_lock(pfn, order) :
				ubw_model_unlock(pfn, order);
		entries[i] = (entries[i] & ~(u64)UBW_BATCH_STATUS_MASK) | status;
	}
	kunmap_local(entries);
	return ok;
}

static bool ubw_model_granted(unsigned long cmd)
{
	switch (cmd) {
	case UBW_CMD_LOCK:
	case UBW_CMD_UNLOCK:
		return m.granted & UBW_CAP_BASIC;
	case UBW_CMD_BATCHED_LOCK:
	case UBW_CMD_BATCHED_UNLOCK:
		return m.granted & UBW_CAP_BATCHED;
	case UBW_CMD_BATCHED_2M_LOCK:
	case UBW_CMD_BATCHED_2M_UNLOCK:
		return (m.granted & UBW_CAP_BATCHED) &&
		       (m.granted & UBW_CAP_BATCHED_2M);
	default:
		return true;
	}
}

unsigned long ubw_hypercall(unsigned long cmd, unsigned long arg1,
			    unsigned long arg2, unsigned long *result,
			    unsigned long *caps)
{
	unsigned long status = UBW_SUCCESS;
	bool wide, lock;

	mutex_lock(&m.lock);
	m.commands++;
	*result = 0;
	*caps = 0;
	if (cmd == UBW_CMD_START) {
		/* a new session: the host forgets every page and the doorbell */
		ubw_model_forget();
		m.doorbell.context = VMCI_INVALID_ID;
		m.doorbell.resource = VMCI_INVALID_ID;
		m.granted = arg1 & m.caps;
		m.started = true;
		*caps = m.granted;
		status = m.granted == UBW_CAP_BASIC || !arg1 ?
			 UBW_SUCCESS : UBW_SUCCESS_WITH_CAPS;
		goto out;
	}
	if (!m.started || m.reset_now) {
		m.reset_now = 0;
		ubw_model_reset();
		status = UBW_RESET;
		goto out;
	}
	if (m.busy_next && cmd != UBW_CMD_GUEST_ID) {
		m.busy_next--;
		status = UBW_BUSY;
		goto out;
	}
	if (!ubw_model_granted(cmd)) {
		status = UBW_CMD_INVALID;
		goto out;
	}
	wide = m.granted & UBW_CAP_64BIT_TARGET;
	switch (cmd) {
	case UBW_CMD_GUEST_ID:
		break;
	case UBW_CMD_VMCI_DOORBELL_SET:
		if (!(m.granted & UBW_CAP_SIGNALLED_WAKEUP)) {
			status = UBW_CMD_INVALID;
			break;
		}
		m.doorbell.context = arg1;
		m.doorbell.resource = arg2;
		break;
	case UBW_CMD_GET_TARGET:
		if (!wide && arg1 > U32_MAX)
			status = UBW_FAILURE;
		break;
	case UBW_CMD_LOCK:
		m.lock_commands++;
		status = ubw_model_lock(arg1, 0);
		break;
	case UBW_CMD_UNLOCK:
		m.unlock_commands++;
		status = ubw_model_unlock(arg1, 0);
		break;
	case UBW_CMD_BATCHED_LOCK:
	case UBW_CMD_BATCHED_2M_LOCK:
	case UBW_CMD_BATCHED_UNLOCK:
	case UBW_CMD_BATCHED_2M_UNLOCK:
		lock = cmd == UBW_CMD_BATCHED_LOCK ||
		       cmd == UBW_CMD_BATCHED_2M_LOCK;
		if (lock)
			m.lock_commands++;
		else
			m.unlock_commands++;
		if (!ubw_model_batch(arg1, arg2, lock,
				     cmd >= UBW_CMD_BATCHED_2M_LOCK ?
				     UBW_2M_ORDER : 0)) {
			ubw_model_reset();
			status = UBW_RESET;
		}
		break;
	default:
		status = UBW_CMD_INVALID;
	}
	/* the target comes back with every command that succeeds */
	if (status == UBW_SUCCESS || cmd == UBW_CMD_LOCK)
		*result = wide ? m.target : lower_32_bits(m.target);
out:
	mutex_unlock(&m.lock);
	return status;
}

/* Pages the model holds that the guest no longer keeps as balloon pages. */
static int audit_show(struct seq_file *s, void *unused)
{
	unsigned long pfn, bad = 0, pages = 0;
	void *entry;

	mutex_lock(&m.lock);
	xa_for_each(&m.locked, pfn, entry) {
		struct page *page = pfn_to_page(pfn);

		pages++;
		/* 4 KiB balloon pages are PageOffline; 2 MiB ones are held */
		if (xa_to_value(entry) ? !ubw_model_set_aside(page) :
					 !PageOffline(page))
			bad++;
	}
	seq_printf(s, "locked_pages: %lu\nlocked_frames: %llu\n", pages,
		   m.locked_frames);
	seq_printf(s, "not_set_aside: %lu\nbad_locks: %llu\nbad_unlocks: %llu\n",
		   bad, m.bad_locks, m.bad_unlocks);
	seq_printf(s, "commands: %llu\nlock_commands: %llu\nunlock_commands: %llu\n",
		   m.commands, m.lock_commands, m.unlock_commands);
	seq_printf(s, "refusals: %llu\nresets: %llu\n", m.refusals, m.resets);
	seq_printf(s, "granted: 0x%lx\n", m.granted);
	seq_printf(s, "doorbell_set: %d\n", m.doorbell.context == 1 &&
		   m.doorbell.resource == 0x42);
	mutex_unlock(&m.lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(audit);

/* Writing anything rings the guest's doorbell, as the host would. */
static int ring_set(void *data, u64 val)
{
	if (!m.ring || m.doorbell.context != 1)
		return -ENODEV;
	m.ring(m.ring_data);
	return 0;
}
DEFINE_DEBUGFS_ATTRIBUTE(ring_fops, NULL, ring_set, "%llu\n");

/* What the model offers from the start (0: all but the doorbell). */
static unsigned long ubw_model_caps;
module_param_named(test_model_caps, ubw_model_caps, ulong, 0444);

int ubw_transport_init(void)
{
	mutex_init(&m.lock);
	xa_init(&m.locked);
	m.caps = ubw_model_caps ?: UBW_CAP_BASIC | UBW_CAP_BATCHED |
				   UBW_CAP_BATCHED_2M | UBW_CAP_64BIT_TARGET;
	m.doorbell.context = VMCI_INVALID_ID;
	m.doorbell.resource = VMCI_INVALID_ID;
	m.dir = debugfs_create_dir("uniballoon_vmware_model", NULL);
	debugfs_create_u64("target", 0600, m.dir, &m.target);
	debugfs_create_x64("caps", 0600, m.dir, &m.caps);
	debugfs_create_u32("refuse_every", 0600, m.dir, &m.refuse_every);
	debugfs_create_u32("busy_next", 0600, m.dir, &m.busy_next);
	debugfs_create_u32("reset_after", 0600, m.dir, &m.reset_after);
	debugfs_create_u32("reset_now", 0600, m.dir, &m.reset_now);
	debugfs_create_u32("reset_locks", 0600, m.dir, &m.reset_locks);
	debugfs_create_file("audit", 0400, m.dir, NULL, &audit_fops);
	debugfs_create_file_unsafe("ring", 0200, m.dir, NULL, &ring_fops);
	pr_warn("uniballoon: TEST BUILD: VMware host model in place of the backdoor\n");
	return 0;
}

void ubw_transport_exit(void)
{
	/* vmw_vmci would ring a callback in a module that is gone */
	WARN(m.ring, "host model: the guest's doorbell outlived the backend\n");
	debugfs_remove_recursive(m.dir);
	xa_destroy(&m.locked);
}
