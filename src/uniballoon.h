/* SPDX-License-Identifier: GPL-2.0 */
/*
 * uniballoon: one memory balloon for every hypervisor.
 *
 * The engine owns the pages and the policy: worker.c the worker; engine.c
 * the settings and the engine's state; policy.c the target in force, the
 * floor and the pressure reserve; pages.c a page mover's pages and
 * size_mover.c a size mover's size, each moved within the rate limits; oom.c
 * OOM and pressure deflation (engine.h has the map). A backend only speaks its hypervisor's protocol:
 * it is told which pages leave or return to the guest, and it reports what
 * the host asks for.
 *
 * Sizes are in pages (PAGE_SIZE, order 0) unless their comment says bytes;
 * times are in jiffies. engine.exchange and engine.lock are the engine's
 * mutexes (engine.c; ub_exchange_lock() and ub_lock() in engine.h).
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
/*
 * A size mover is attached: the balloon is a hypervisor driver's, steered
 * by size (struct ub_size_mover). Set by ub_attach_size(), never by a
 * backend; the engine's one mark of the backend's kind, read with the
 * other features without engine.lock. sysfs shows it as "target_driven".
 */
#define UB_FEAT_SIZE_MOVER	BIT(6)

/**
 * enum ub_reason - what set the target in force, or why it changed
 * @UB_REASON_HOST: the host's request
 * @UB_REASON_USER: the user's override (sysfs target)
 * @UB_REASON_OOM: the cap an OOM or pressure deflation left
 * @UB_REASON_FLOOR: the floor (or the pressure reserve) holds the balloon
 *
 * ub_reason_name() gives the names sysfs target_source and the
 * balloon:target tracepoint show; they are ABI.
 */
enum ub_reason {
	UB_REASON_HOST,
	UB_REASON_USER,
	UB_REASON_OOM,
	UB_REASON_FLOOR,
};

/**
 * ub_reason_name() - name of a target reason
 * @reason: the reason
 *
 * Context: Any context.
 * Return: "host", "user", "oom" or "floor", a static string.
 */
const char *ub_reason_name(enum ub_reason reason);

/**
 * enum ub_block - why the balloon is not at its target
 * @UB_BLOCK_NONE: at the target, or moving towards it
 * @UB_BLOCK_HOST_SILENT: the host has not answered requests
 * @UB_BLOCK_HOST_REFUSING: the host refuses pages
 * @UB_BLOCK_HOST_ERROR: an exchange failed (busy, an error)
 * @UB_BLOCK_HOST_RESET: the host reset the protocol, in a row
 * @UB_BLOCK_FLOOR: the floor leaves no more to take
 * @UB_BLOCK_RESERVE: the pressure reserve is met
 * @UB_BLOCK_RATE: a rate limit spaces the batches
 * @UB_BLOCK_MEMORY: the allocator has no pages to give
 *
 * As the worker's last step found it (ub_blocked_locked()): sysfs
 * "blocked" and the balloon:blocked tracepoint show ub_block_name().
 */
enum ub_block {
	UB_BLOCK_NONE,
	UB_BLOCK_HOST_SILENT,
	UB_BLOCK_HOST_REFUSING,
	UB_BLOCK_HOST_ERROR,
	UB_BLOCK_HOST_RESET,
	UB_BLOCK_FLOOR,
	UB_BLOCK_RESERVE,
	UB_BLOCK_RATE,
	UB_BLOCK_MEMORY,
};

/**
 * ub_block_name() - name of a block reason
 * @why: the reason
 *
 * Context: Any context.
 * Return: "none", "host-silent", "host-refusing", "host-error",
 * "host-reset", "floor", "reserve", "rate" or "memory", a static string.
 */
const char *ub_block_name(enum ub_block why);

/**
 * struct ub_batch - pages handed to the backend in one protocol exchange
 * @count: pages in @pages, 1 to the mover's @batch_max; set by the engine
 * @order: the order of every page in @pages: 0, or the backend's
 *	@huge_order
 * @started: set by the backend, its progress: the requests for pages
 *	[0, @started) are sent; after -ETIMEDOUT the engine keeps those and
 *	frees the rest, which the host never saw
 * @pages: the pages, each of @order
 * @refused: set by a backend whose host may turn single pages down (all
 *	false from the engine): the engine keeps a page refused on inflate
 *	aside until the end of the cycle, so it is not taken again, and a
 *	page refused on deflate in the balloon
 * @stop: set by the backend: the host wants no more pages this cycle; the
 *	next batch waits a poll interval at least
 * @has_target: set by the backend: the host's answer carried its target
 * @target: with @has_target, the host's target in pages, taken as a polled
 *	target (it ends an OOM cap only if it changed)
 * @timeout: set by the engine: the longest wait for the host's answer, in
 *	jiffies (0: the backend's own bound), for callers that must not wait
 *	long (OOM, reclaim); a backend whose host answers at once may ignore
 *	it
 */
struct ub_batch {
	unsigned int count;
	unsigned int order;
	unsigned int started;
	struct page *pages[UB_BATCH_MAX];
	bool refused[UB_BATCH_MAX];
	bool stop;
	bool has_target;
	unsigned long target;
	unsigned long timeout;
};

/**
 * struct ub_backend - what every backend has
 * @name: the backend's name, for sysfs "backend", debugfs, the tracepoints
 *	and the log; required
 * @poll_interval: jiffies between two calls of @poll; required with @poll
 * @poll: for hosts that are polled (NULL: the host notifies, see
 *	ub_set_host_target()): store the host's target, in pages, in
 *	*@target. Returns 0 or -errno; an error is counted and traced, and
 *	the next poll comes @poll_interval later. A page mover's @poll may
 *	return -ECONNRESET: the host has dropped every page, and the engine
 *	frees them without telling it and calls @restart. Called from the
 *	engine's poll work (first right after attach and resume, then every
 *	@poll_interval, or at once after ub_poll_now()) with engine.exchange
 *	and engine.lock held, for a page mover only while its protocol is up;
 *	may sleep.
 * @shutdown: at detach, with engine.exchange and engine.lock held; may
 *	sleep. A page mover returns 0 if the host has forgotten every page
 *	itself: the engine then frees them without telling it; otherwise it
 *	gives them back one exchange at a time. A size mover hands the
 *	balloon back to its driver; its return value is ignored. NULL:
 *	nothing to do.
 * @debugfs_show: print raw protocol detail for
 *	/sys/kernel/debug/balloon/backend, with engine.lock held but perhaps
 *	during an exchange: only what a racy read may show (counters,
 *	flags); returns 0 or -errno (a seq_file show). NULL: "no backend
 *	active" is shown.
 *
 * Two kinds of backend. A page mover (virtio, VMware) speaks a protocol
 * that hands the host pages the engine took from the guest. A size mover
 * (Xen) sits beside a driver in the kernel that already moves the pages:
 * the engine decides the balloon size in force, in steps that respect the
 * floor and the rates, and the backend hands each step to that driver.
 * Both start with this, and every operation gets the @priv the backend
 * attached with.
 */
struct ub_backend {
	const char *name;
	unsigned long poll_interval;
	int (*poll)(void *priv, unsigned long *target);
	int (*shutdown)(void *priv);
	int (*debugfs_show)(void *priv, struct seq_file *m);
};

/**
 * struct ub_page_mover - a backend that hands the host pages
 * @base: what every backend has
 * @batch_max: pages (of order 0) per @inflate or @deflate call, 1 to
 *	UB_BATCH_MAX; a batch of huge pages holds at most as many
 * @inflate: the host takes the pages of @batch; required
 * @deflate: the host gives the pages of @batch back, before the guest
 *	reuses them; required
 * @settle: wait up to @timeout jiffies (0: only look) for the host to
 *	answer every request it was sent: 0 once it has, or can no longer
 *	act on them (a broken queue); -ETIMEDOUT if it still may. With
 *	engine.exchange held, and engine.lock too when @timeout is 0; may
 *	sleep. Required of a backend whose exchanges can time out; NULL:
 *	they never do (each returns with the host's answer).
 * @report_size: the balloon now holds @pages pages (virtio: the "actual"
 *	field); called with engine.lock held after every change of the size,
 *	must not fail. NULL: the host is not told.
 * @restart: start the protocol again after the host reset it (the engine
 *	has dropped every page); 0 or -errno, and after an error it is
 *	called again before the next exchange. With engine.exchange and
 *	engine.lock held; may sleep. NULL: nothing to restart.
 * @huge_order: > 0: the host also takes pages of that order (2 MiB
 *	blocks); 0: order 0 only
 * @huge_ready: whether the host takes pages of @huge_order now, asked with
 *	engine.exchange and engine.lock held before each inflation batch;
 *	NULL: always
 * @huge_splittable: the host counts huge pages as 4 KiB frames, so the
 *	guest may split one to give back part of it without telling the host
 * @migrate_release_first: on migration, give the old page back before the
 *	host takes the new (for a host at its target that may refuse one
 *	page more)
 * @huge_batch_bytes: most bytes in one batch of huge pages; 0:
 *	UB_BATCH_MAX_BYTES. A host whose one command carries a whole batch
 *	(VMware: 512 2 MiB pages, 1 GiB) may take more: pages are allocated
 *	outside engine.lock, and the allocation stops at the pressure reserve.
 *
 * @inflate and @deflate return 0, or -errno if the host took none of the
 * pages (pages it refused one by one are marked in @batch->refused). Any
 * exchange may return -ECONNRESET (see @base.poll), or -ETIMEDOUT: the
 * host has the requests for pages [0, @batch->started) but did not answer
 * in time, and may still act on them; the engine keeps those pages until
 * the host has answered (see @settle). A call that returns 0 means the
 * host has answered every request sent before it too. Both are called
 * with engine.exchange held (not engine.lock: no one waits for it on a
 * host) and may sleep, from the worker, from OOM and pressure deflation
 * (which bound the wait with @batch->timeout) and, for one page at a
 * time, from page migration (compaction). @report_size may run during
 * either.
 */
struct ub_page_mover {
	struct ub_backend base;
	unsigned int batch_max;
	int (*inflate)(void *priv, struct ub_batch *batch);
	int (*deflate)(void *priv, struct ub_batch *batch);
	int (*settle)(void *priv, unsigned long timeout);
	void (*report_size)(void *priv, unsigned long pages);
	int (*restart)(void *priv);
	unsigned int huge_order;
	bool (*huge_ready)(void *priv);
	bool huge_splittable;
	bool migrate_release_first;
	unsigned long huge_batch_bytes;
};

/**
 * struct ub_size_mover - a backend whose hypervisor driver moves the pages
 * @base: what every backend has
 * @set_size: the balloon in force is now @pages: hand it to the driver,
 *	which moves the pages in its own time. Returns 0 or -errno; an error
 *	is counted and traced, and the step is tried again later. With
 *	engine.lock held; may sleep. Required.
 * @get_size: the balloon's real size now, in pages, as the driver has
 *	reached it; read at attach and polled while the balloon moves, with
 *	engine.lock held. Required.
 */
struct ub_size_mover {
	struct ub_backend base;
	int (*set_size)(void *priv, unsigned long pages);
	unsigned long (*get_size)(void *priv);
};

/**
 * enum ub_stat - counters under /sys/kernel/balloon/stats/, one file each
 * @UB_STAT_INFLATED: bytes the balloon took
 * @UB_STAT_DEFLATED: bytes the balloon gave back
 * @UB_STAT_ALLOC_FAILURES: 4 KiB allocations for inflation that failed
 * @UB_STAT_HOST_REFUSALS: batch entries (pages of the batch's order) the
 *	host refused to take
 * @UB_STAT_HOST_ERRORS: failed exchanges (ub_backend_error())
 * @UB_STAT_OOM_DEFLATIONS: OOM and pressure deflations that released pages
 * @UB_STAT_OOM_DEFLATED: bytes those released (a size mover: promised)
 * @UB_STAT_TARGET_CHANGES: changes of the host's target, and the user's
 *	override set or cleared
 * @UB_STAT_FLOOR_HOLDS: times the floor began to hold the balloon
 * @UB_STAT_RATE_DELAYS: batches and steps a rate limit delayed or cut
 * @UB_STAT_MIGRATIONS: ballooned pages compaction moved (or, where the
 *	host refused the new page, released)
 * @UB_STAT_HOST_RESETS: protocol resets by the host
 * @UB_STAT_NR: the number of counters
 *
 * ub_stat_names[] holds the file names.
 */
enum ub_stat {
	UB_STAT_INFLATED,
	UB_STAT_DEFLATED,
	UB_STAT_ALLOC_FAILURES,
	UB_STAT_HOST_REFUSALS,
	UB_STAT_HOST_ERRORS,
	UB_STAT_OOM_DEFLATIONS,
	UB_STAT_OOM_DEFLATED,
	UB_STAT_TARGET_CHANGES,
	UB_STAT_FLOOR_HOLDS,
	UB_STAT_RATE_DELAYS,
	UB_STAT_MIGRATIONS,
	UB_STAT_HOST_RESETS,
	UB_STAT_NR,
};

/* The file names under /sys/kernel/balloon/stats/, by enum ub_stat. */
extern const char *const ub_stat_names[UB_STAT_NR];

/* worker.c and engine.c: the interface backends use */

/**
 * ub_attach_pages() - attach a page mover
 * @pm: its operations; must outlive the attachment
 * @priv: handed to every operation
 * @features: UB_FEAT_* the host offers; the engine adds UB_FEAT_MIGRATION
 *	where balloon pages can migrate
 *
 * The balloon starts empty and the host is taken to want 0 pages until it
 * says more; a polled host is asked at once. The user's settings and
 * override are kept (an override larger than the guest's memory is
 * dropped), and oom_deflate is in force only if @features has
 * UB_FEAT_OOM_DEFLATE.
 *
 * Context: Process context. Takes engine.lock; may sleep.
 * Return: 0; -EINVAL (with a warning) if @pm lacks @inflate, @deflate or a
 * name, a polled @pm an interval, or @batch_max is out of range; -EBUSY if
 * a backend is attached already.
 */
int ub_attach_pages(const struct ub_page_mover *pm, void *priv,
		    unsigned long features);

/**
 * ub_attach_size() - attach a size mover
 * @sm: its operations; must outlive the attachment
 * @priv: handed to every operation
 * @features: UB_FEAT_* the host offers; the engine adds UB_FEAT_SIZE_MOVER
 *
 * The balloon starts at the size its driver holds now (@get_size), which
 * the host is taken to want until it says more. The user's settings and
 * override are kept; oom_deflate is on only if the user chose it and
 * @features has UB_FEAT_OOM_DEFLATE.
 *
 * Context: Process context. Takes engine.lock and calls @get_size; may sleep.
 * Return: 0; -EINVAL (with a warning) if @sm lacks @set_size, @get_size or
 * a name, or a polled @sm an interval; -EBUSY if a backend is attached
 * already.
 */
int ub_attach_size(const struct ub_size_mover *sm, void *priv,
		   unsigned long features);

/**
 * ub_detach() - stop the engine and let the backend go
 *
 * Stops the worker and the poll for good, then empties the balloon while
 * the device still works (rmmod, device removal). A page mover's pages go
 * back to the guest, the host told first unless @shutdown says it has
 * forgotten them; the pages of requests the host never answers within
 * 10 s stay allocated for good (a warning says how many). A size mover's
 * driver keeps its balloon (@shutdown hands it back). Does nothing if no
 * backend is attached. The backend's operations are not called after
 * this returns, and a new backend may attach.
 *
 * Context: Process context, without engine.exchange or engine.lock. Waits
 * for the worker and takes both; may sleep for host exchanges (seconds on
 * a silent host).
 */
void ub_detach(void);

/**
 * ub_pause() - stop moving the balloon
 *
 * The worker and the poll stop until ub_resume(); an inflation batch being
 * filled is freed, and OOM deflation and migration leave the balloon
 * alone meanwhile. The balloon keeps its pages.
 *
 * Context: Process context, without engine.lock. Takes engine.lock and waits for
 * running work items; may sleep.
 */
void ub_pause(void);

/**
 * ub_resume() - move the balloon again after ub_pause()
 *
 * Polls a polled host at once and lets the worker act.
 *
 * Context: Process context. Takes engine.lock; may sleep.
 */
void ub_resume(void);

/**
 * ub_set_host_target() - the host asked for a balloon of @pages
 * @pages: the host's target, in pages
 *
 * For a notification (virtio's config change, Xen's xenstore watch), not a
 * poll: without a user override, even a repeated request ends an OOM cap,
 * since the host saw the deflation in the balloon's size and asks again.
 * The worker acts on it.
 *
 * Context: Process context. Takes engine.lock; may sleep.
 */
void ub_set_host_target(unsigned long pages);

/**
 * ub_backend_error() - count and trace a failed exchange
 * @event: what failed ("inflate", "poll", "stats", ...), for the
 *	balloon:backend tracepoint
 * @err: the -errno it failed with
 *
 * Adds one to UB_STAT_HOST_ERRORS; the engine calls it for the exchanges it
 * drives, a backend for those it makes on its own.
 *
 * Context: Any context; takes no lock.
 */
void ub_backend_error(const char *event, int err);

/**
 * ub_poll_now() - poll the host now rather than at the next interval
 *
 * For a polled host that signals a change of its target (VMware's
 * doorbell). Does nothing before ub_engine_init().
 *
 * Context: Any context, interrupts included; takes no lock.
 */
void ub_poll_now(void);

/* worker.c, engine.c, policy.c: what sysfs.c, debugfs.c and oom.c use */

/**
 * struct ub_settings - the user's settings (sysfs files, module parameters)
 * @floor: bytes of MemAvailable inflation leaves the guest; 0: no floor
 * @inflate_rate: bytes per second the balloon grows by at most; 0:
 *	unlimited
 * @deflate_rate: bytes per second it shrinks by at most; 0: unlimited
 * @oom_deflate_size: bytes given back per OOM deflation
 * @oom_deflate: whether OOM and pressure deflation are in force (the
 *	user's choice, where the host allows it)
 */
struct ub_settings {
	u64 floor;
	u64 inflate_rate;
	u64 deflate_rate;
	u64 oom_deflate_size;
	bool oom_deflate;
};

/**
 * struct ub_snapshot - the balloon's state, for readers
 * @backend: the attached backend's name, or "none"
 * @features: UB_FEAT_* of the attached backend, 0 if none
 * @size: pages the balloon holds
 * @host_target: pages the host asks for
 * @target: pages in force, after the override, the OOM cap and the floor
 * @target_source: what set @target
 * @user_override: the user's target overrides the host's
 * @oom_capped: an OOM deflation caps the target until asked again
 * @floor_held: the floor holds the balloon below its target
 * @reserve_hit: inflation met the pressure reserve, which holds it as a
 *	floor
 * @isolated: pages compaction is migrating now, included in @size
 * @huge_order: the order of huge pages the backend takes; 0 if none
 * @huge_pages: how many pages of @huge_order the balloon holds; their
 *	order-0 pages count in @size
 * @unanswered: pages in requests the host has not answered, included in
 *	@size
 * @blocked: why the worker's last step did not reach the target
 */
struct ub_snapshot {
	const char *backend;
	unsigned long features;
	unsigned long size;
	unsigned long host_target;
	unsigned long target;
	enum ub_reason target_source;
	bool user_override;
	bool oom_capped;
	bool floor_held;
	bool reserve_hit;
	unsigned long isolated;
	unsigned int huge_order;
	unsigned long huge_pages;
	unsigned long unanswered;
	enum ub_block blocked;
};

/**
 * ub_snapshot() - read the balloon's state without waiting
 * @snap: filled in
 *
 * Readers never wait for engine.lock: each field is read once without it,
 * so a snapshot that races with a change may mix fields from before and
 * after it.
 *
 * Context: Any context; takes no lock, does not sleep.
 */
void ub_snapshot(struct ub_snapshot *snap);

/**
 * ub_get_settings() - read the settings without waiting
 * @set: filled in
 *
 * As ub_snapshot(): each field read once, without engine.lock.
 *
 * Context: Any context; takes no lock, does not sleep.
 */
void ub_get_settings(struct ub_settings *set);

/**
 * ub_set_user_target() - override the host's target
 * @bytes: the balloon size the user wants, in bytes (rounded down to
 *	pages)
 *
 * A new request: it also lifts an OOM cap. The override stays across
 * detach and attach until cleared.
 *
 * Context: Process context. Takes engine.lock; may sleep.
 * Return: 0; -ENODEV if no backend is attached; -ERANGE if @bytes is more
 * than the guest's memory (ub_guest_pages()).
 */
int ub_set_user_target(u64 bytes);

/**
 * ub_clear_user_target() - follow the host's target again
 *
 * Lifts an OOM cap too if an override was set; without one, changes
 * nothing.
 *
 * Context: Process context. Takes engine.lock; may sleep.
 * Return: 0, or -ENODEV if no backend is attached.
 */
int ub_clear_user_target(void);

/**
 * ub_set_floor() - set the MemAvailable inflation leaves the guest
 * @bytes: the floor in bytes; 0: none
 *
 * Works with no backend attached too (module parameters).
 *
 * Context: Process context. Takes engine.lock; may sleep.
 * Return: 0, or -ERANGE if @bytes is more than the guest's memory.
 */
int ub_set_floor(u64 bytes);

/**
 * ub_set_rate() - limit how fast the balloon moves
 * @inflate: true for the inflate rate, false for the deflate rate
 * @rate: bytes per second; 0: unlimited
 *
 * Context: Process context. Takes engine.lock; may sleep.
 * Return: 0, or -ERANGE if @rate is not 0 and below one page per second.
 */
int ub_set_rate(bool inflate, u64 rate);

/**
 * ub_set_oom_deflate() - choose whether the balloon deflates on OOM
 * @on: the user's choice
 *
 * The choice outlives the backend: with none attached it waits for one,
 * and it applies wherever the host allows OOM deflation.
 *
 * Context: Process context. Takes engine.lock; may sleep.
 * Return: 0, or -EPERM if @on and the attached backend's host does not
 * allow it (no UB_FEAT_OOM_DEFLATE).
 */
int ub_set_oom_deflate(bool on);

/**
 * ub_set_oom_deflate_size() - set how much one OOM deflation gives back
 * @size: bytes
 *
 * Context: Process context. Takes engine.lock; may sleep.
 * Return: 0, or -ERANGE if @size is below one page or more than the guest's
 * memory.
 */
int ub_set_oom_deflate_size(u64 size);

/**
 * ub_stat_read() - read a counter
 * @stat: which one
 *
 * Context: Any context; takes no lock.
 * Return: the counter's value, in bytes or events as enum ub_stat says.
 */
u64 ub_stat_read(enum ub_stat stat);

/**
 * ub_guest_pages() - the memory the guest would have with an empty balloon
 *
 * totalram_pages(), plus the balloon's size where ballooned pages leave the
 * managed page count (ub_adjusts_managed()). Read without engine.lock.
 *
 * Context: Any context; takes no lock.
 * Return: pages.
 */
unsigned long ub_guest_pages(void);

/**
 * ub_backend_debugfs_show() - the backend's protocol detail for debugfs
 * @m: the seq_file to print to
 *
 * Context: Process context. Takes engine.lock (not engine.exchange: it
 * answers while a host stalls) and calls @debugfs_show; may sleep.
 * Return: what @debugfs_show returns, or 0 after printing "no backend
 * active".
 */
int ub_backend_debugfs_show(struct seq_file *m);

/**
 * ub_engine_init() - set the engine up at module init
 *
 * Zeroes the counters and allocates the engine's freezable workqueue (no
 * protocol traffic while the guest suspends). engine.lock and the default
 * settings are static, so module parameters may be set before this runs.
 *
 * Context: Module init; may sleep.
 * Return: 0, or -ENOMEM.
 */
int ub_engine_init(void);

/**
 * ub_engine_exit() - tear the engine down at module exit
 *
 * Destroys the workqueue; ub_poll_now() does nothing afterwards. Every
 * backend must be detached first.
 *
 * Context: Module init's error path or exit; may sleep.
 */
void ub_engine_exit(void);

/* sysfs.c, debugfs.c, oom.c, policy.c */

/**
 * ub_params_check() - refuse a load with a bad module parameter
 *
 * The parameters go through the same setters as the sysfs files and are
 * applied before the module's init; one that was refused fails the load.
 *
 * Context: Module init.
 * Return: 0, or -EINVAL if a parameter was refused (the log says which).
 */
int ub_params_check(void);

/**
 * ub_sysfs_init() - create /sys/kernel/balloon and its stats/ directory
 *
 * Context: Module init; may sleep.
 * Return: 0, or -ENOMEM or the error sysfs_create_group() returned.
 */
int ub_sysfs_init(void);

/**
 * ub_sysfs_exit() - remove /sys/kernel/balloon
 *
 * Context: Module init's error path or exit; may sleep.
 */
void ub_sysfs_exit(void);

/**
 * ub_debugfs_init() - create /sys/kernel/debug/balloon/{status,backend}
 *
 * debugfs is optional: a failure only costs the debug files.
 *
 * Context: Module init; may sleep.
 */
void ub_debugfs_init(void);

/**
 * ub_debugfs_exit() - remove /sys/kernel/debug/balloon
 *
 * Context: Module init's error path or exit; may sleep.
 */
void ub_debugfs_exit(void);

/**
 * ub_oom_init() - register the OOM notifier and the pressure shrinker
 *
 * Both deflate only while oom_deflate is in force and the host allows it.
 *
 * Context: Module init; may sleep.
 * Return: 0, or the -errno of the registration that failed (nothing stays
 * registered then).
 */
int ub_oom_init(void);

/**
 * ub_oom_exit() - unregister the shrinker and the OOM notifier
 *
 * Context: Module init's error path or exit; may sleep.
 */
void ub_oom_exit(void);

/**
 * ub_oom_notifier_stats() - what the OOM notifier told the OOM killer
 * @calls: set to the number of times it was called
 * @reported: set to the pages it reported freed in all; a non-zero report
 *	makes the kernel skip a kill, so only pages the guest has back count
 *
 * Context: Any context; takes no lock.
 */
void ub_oom_notifier_stats(unsigned long *calls, unsigned long *reported);

/**
 * ub_pressure_reserve() - the MemAvailable inflation leaves the guest
 *
 * Four times the pressure threshold (ub_pressure_threshold()) while
 * oom_deflate is in force and the host allows it, so that a balloon held
 * there leaves kswapd idle and the shrinker uncalled. Read without
 * engine.lock.
 *
 * Context: Any context; takes no lock.
 * Return: pages; 0 when OOM deflation is off.
 */
unsigned long ub_pressure_reserve(void);

/* backends: each one's entry points, listed in core.c */

/**
 * ub_virtio_init() - start the virtio-balloon backend
 * @forced: the user chose it (backend=virtio): keep the driver registered
 *	even if no device is bound yet
 *
 * Registers the virtio driver; its probe attaches to the engine.
 *
 * Context: Module init; may sleep.
 * Return: 0; -ENODEV if not @forced and no device bound (the driver is
 * unregistered again); or register_virtio_driver()'s -errno.
 */
int ub_virtio_init(bool forced);

/**
 * ub_virtio_exit() - unregister the virtio driver, detaching its device
 *
 * Context: Module exit; may sleep.
 */
void ub_virtio_exit(void);

/**
 * ub_vmware_init() - start the VMware backend
 * @forced: the user chose it (backend=vmware): skip detection
 *
 * Context: Module init; may sleep.
 * Return: 0 once attached; -ENODEV if not on VMware (and not @forced);
 * -EBUSY if vmw_balloon holds the balloon; another -errno if the backend
 * cannot start.
 */
int ub_vmware_init(bool forced);

/**
 * ub_vmware_exit() - detach the VMware backend and free it
 *
 * Context: Module exit; may sleep.
 */
void ub_vmware_exit(void);

/**
 * ub_xen_init() - start the Xen backend
 * @forced: the user chose it (backend=xen); without Xen it still fails
 *
 * Context: Module init; may sleep.
 * Return: 0 once attached; -ENODEV if not in a Xen domain, or another
 * -errno if the backend cannot start.
 */
int ub_xen_init(bool forced);

/**
 * ub_xen_exit() - detach the Xen backend and free it
 *
 * Context: Module exit; may sleep.
 */
void ub_xen_exit(void);

#endif /* UNIBALLOON_H */
