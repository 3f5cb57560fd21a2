/* SPDX-License-Identifier: GPL-2.0 */
/*
 * uniballoon: one memory balloon for every hypervisor.
 *
 * The core (engine.c) owns the pages and the policy: the target in force,
 * the floor, the rate limits and OOM deflation. A backend only speaks its
 * hypervisor's protocol: it is told which pages leave or return to the
 * guest, and it reports what the host asks for.
 */
#ifndef UNIBALLOON_H
#define UNIBALLOON_H

#include <linux/types.h>
#include <linux/mm_types.h>
#include <linux/seq_file.h>

#include "compat.h"

/* Largest batch a backend may ask for, in pages of the batch's order. */
#define UB_BATCH_MAX		2048
/* At most this much per batch by default, whatever the page size. */
#define UB_BATCH_MAX_BYTES	(64UL << 20)

/* What the active backend supports; shown in /sys/kernel/balloon/features. */
#define UB_FEAT_TELL_HOST	BIT(0)	/* host must hear of a deflate first */
#define UB_FEAT_STATS		BIT(1)	/* guest memory stats go to the host */
#define UB_FEAT_OOM_DEFLATE	BIT(2)	/* host allows deflation on OOM */
#define UB_FEAT_MIGRATION	BIT(3)	/* ballooned pages stay movable */
#define UB_FEAT_FREE_PAGE_REPORTING BIT(4) /* free memory goes back to the host */
#define UB_FEAT_FREE_PAGE_HINT	BIT(5)	/* free memory is hinted during migration */
/* the balloon is a hypervisor driver's, steered by target (set_size) */
#define UB_FEAT_TARGET_DRIVEN	BIT(6)

/* Why the target in force changed; the strings are the tracepoint ABI. */
enum ub_reason {
	UB_REASON_HOST,
	UB_REASON_USER,
	UB_REASON_OOM,
	UB_REASON_FLOOR,
};

const char *ub_reason_name(enum ub_reason reason);

/*
 * Why the balloon is not at its target, as the worker's last step found:
 * sysfs "blocked" and the balloon:blocked tracepoint show the names.
 */
enum ub_block {
	UB_BLOCK_NONE,		/* at the target, or moving towards it */
	UB_BLOCK_HOST_SILENT,	/* the host has not answered requests */
	UB_BLOCK_HOST_REFUSING,	/* it refuses pages */
	UB_BLOCK_HOST_ERROR,	/* an exchange failed (busy, an error) */
	UB_BLOCK_HOST_RESET,	/* it reset the protocol, in a row */
	UB_BLOCK_FLOOR,		/* the floor leaves no more to take */
	UB_BLOCK_RESERVE,	/* the pressure reserve is met */
	UB_BLOCK_RATE,		/* a rate limit spaces the batches */
	UB_BLOCK_MEMORY,	/* the allocator has no pages to give */
};

const char *ub_block_name(enum ub_block why);

/*
 * A batch of pages handed to the backend in one protocol exchange.
 * @refused is filled in by backends whose host may turn single pages down;
 * the engine keeps refused pages aside until the end of the cycle.
 */
struct ub_batch {
	unsigned int count;
	unsigned int order;
	/* the backend's progress: pages [0, started) are sent */
	unsigned int started;
	struct page *pages[UB_BATCH_MAX];
	bool refused[UB_BATCH_MAX];
	/* set by the backend: the host wants no more pages this cycle */
	bool stop;
	/* set by the backend: the host's answer carried its target */
	bool has_target;
	unsigned long target;
	/*
	 * set by the engine: the longest wait for the host's answer, in
	 * jiffies (0: the backend's own bound), for callers that must not
	 * wait long (OOM, reclaim); a backend whose host answers at once
	 * may ignore it
	 */
	unsigned long timeout;
};

/*
 * Two kinds of backend. A page mover (virtio, VMware) speaks a protocol
 * that hands the host pages the engine took from the guest. A size mover
 * (Xen) sits beside a driver in the kernel that already moves the pages:
 * the engine decides the balloon size in force, in steps that respect the
 * floor and the rates, and the backend hands each step to that driver.
 * Both start with what every backend has.
 */
struct ub_backend {
	const char *name;
	/*
	 * Hosts that are polled: ask for the target every @poll_interval
	 * (jiffies). A page mover's @poll may return -ECONNRESET: the host
	 * has dropped every page, the engine frees them without telling it
	 * and calls @restart.
	 */
	unsigned long poll_interval;
	int (*poll)(void *priv, unsigned long *target);
	/* before unload: 0 if the host has forgotten every page itself */
	int (*shutdown)(void *priv);
	/* raw protocol detail for /sys/kernel/debug/balloon/backend */
	int (*debugfs_show)(void *priv, struct seq_file *m);
};

struct ub_page_mover {
	struct ub_backend base;
	/* pages (order 0) per inflate/deflate call, 1 to UB_BATCH_MAX */
	unsigned int batch_max;
	/*
	 * The host takes these pages (@inflate) or gives them back, before
	 * the guest reuses them (@deflate): 0, or -errno if none was taken.
	 * Any exchange may return -ECONNRESET (see poll), or -ETIMEDOUT:
	 * the host has the requests for pages [0, started) but did not
	 * answer in time, and may still act on them; the engine keeps those
	 * pages until the host has answered. A call that returns 0 means
	 * the host has answered every request sent before it too.
	 */
	int (*inflate)(void *priv, struct ub_batch *batch);
	int (*deflate)(void *priv, struct ub_batch *batch);
	/*
	 * Wait up to @timeout jiffies (0: only look) for the host to answer
	 * every request it was sent: 0 once it has, or can no longer act on
	 * them (a broken queue); -ETIMEDOUT if it still may. Required of a
	 * backend whose exchanges can time out; NULL: they never do.
	 */
	int (*settle)(void *priv, unsigned long timeout);
	/* the balloon now holds @pages pages (virtio: the "actual" field) */
	void (*report_size)(void *priv, unsigned long pages);
	int (*restart)(void *priv);
	/* @huge_order > 0: the host also takes pages of that order */
	unsigned int huge_order;
	bool (*huge_ready)(void *priv);	/* NULL: always */
	/*
	 * The host counts huge pages as 4 KiB frames, so the guest may split
	 * one to give back part of it without telling the host.
	 */
	bool huge_splittable;
	/* migration: give the old page back before the host takes the new */
	bool migrate_release_first;
	/*
	 * Most bytes in one batch of huge pages; 0: UB_BATCH_MAX_BYTES. A
	 * host whose one command carries a whole batch (VMware: 512 2 MiB
	 * pages, 1 GiB) may take more: pages are allocated outside ub.lock,
	 * and the allocation stops at the pressure reserve.
	 */
	unsigned long huge_batch_bytes;
};

struct ub_size_mover {
	struct ub_backend base;
	/* the balloon in force is now @pages */
	int (*set_size)(void *priv, unsigned long pages);
	/* the balloon's real size now, polled while it moves */
	unsigned long (*get_size)(void *priv);
};

/* Counters under /sys/kernel/balloon/stats/, one file each. */
enum ub_stat {
	UB_STAT_INFLATED,		/* bytes */
	UB_STAT_DEFLATED,		/* bytes */
	UB_STAT_ALLOC_FAILURES,
	UB_STAT_HOST_REFUSALS,
	UB_STAT_HOST_ERRORS,
	UB_STAT_OOM_DEFLATIONS,
	UB_STAT_OOM_DEFLATED,		/* bytes */
	UB_STAT_TARGET_CHANGES,
	UB_STAT_FLOOR_HOLDS,
	UB_STAT_RATE_DELAYS,
	UB_STAT_MIGRATIONS,
	UB_STAT_HOST_RESETS,
	UB_STAT_NR,
};

extern const char *const ub_stat_names[UB_STAT_NR];

/* engine.c: the interface backends use */
int ub_attach_pages(const struct ub_page_mover *pm, void *priv,
		    unsigned long features);
int ub_attach_size(const struct ub_size_mover *sm, void *priv,
		   unsigned long features);
void ub_detach(void);
void ub_pause(void);
void ub_resume(void);
/* the host asked for a balloon of @pages (a notification, not a poll) */
void ub_set_host_target(unsigned long pages);
void ub_backend_error(const char *event, int err);
void ub_poll_now(void);

/* engine.c: the interface sysfs.c, debugfs.c and oom.c use */
struct ub_settings {
	u64 floor;			/* bytes */
	u64 inflate_rate;		/* bytes per second, 0 = unlimited */
	u64 deflate_rate;
	u64 oom_deflate_size;		/* bytes */
	bool oom_deflate;
};

struct ub_snapshot {
	const char *backend;
	unsigned long features;
	unsigned long size;		/* pages */
	unsigned long host_target;	/* pages */
	unsigned long target;		/* pages, in force */
	enum ub_reason target_source;
	bool user_override;
	bool oom_capped;
	bool floor_held;
	bool reserve_hit;
	unsigned long isolated;		/* pages being migrated */
	unsigned int huge_order;
	unsigned long huge_pages;	/* of huge_order, included in size */
	/* in requests the host has not answered, included in size */
	unsigned long unanswered;
	enum ub_block blocked;
};

void ub_snapshot(struct ub_snapshot *snap);
void ub_get_settings(struct ub_settings *set);
int ub_set_user_target(u64 bytes);
int ub_clear_user_target(void);
int ub_set_floor(u64 bytes);
int ub_set_rate(bool inflate, u64 rate);
int ub_set_oom_deflate(bool on);
int ub_set_oom_deflate_size(u64 size);
u64 ub_stat_read(enum ub_stat stat);
unsigned long ub_guest_pages(void);
int ub_backend_debugfs_show(struct seq_file *m);
int ub_engine_init(void);
void ub_engine_exit(void);

/* sysfs.c, debugfs.c, oom.c, policy.c */
int ub_params_check(void);
int ub_sysfs_init(void);
void ub_sysfs_exit(void);
void ub_debugfs_init(void);
void ub_debugfs_exit(void);
int ub_oom_init(void);
void ub_oom_exit(void);
void ub_oom_notifier_stats(unsigned long *calls, unsigned long *reported);
unsigned long ub_pressure_reserve(void);

/* backends: each one's entry points, listed in core.c */
int ub_virtio_init(bool forced);
void ub_virtio_exit(void);
int ub_vmware_init(bool forced);
void ub_vmware_exit(void);
int ub_xen_init(bool forced);
void ub_xen_exit(void);

#endif /* UNIBALLOON_H */
