// SPDX-License-Identifier: GPL-2.0
/*
 * /sys/kernel/debug/balloon: "status" for people, "backend" for the raw
 * protocol counters of whichever backend is active.
 */
#include <linux/debugfs.h>
#include <linux/mm.h>
#include <linux/seq_file.h>

#include "uniballoon.h"

static struct dentry *ub_debugfs_dir;

static int status_show(struct seq_file *m, void *unused)
{
	struct ub_settings set;
	struct ub_snapshot snap;
	unsigned long oom_calls, oom_reported;
	u64 reserve;
	int i;

	ub_snapshot(&snap);
	ub_get_settings(&set);

	seq_printf(m, "backend:          %s\n", snap.backend);
	seq_printf(m, "size:             %lu pages (%lu MiB)\n", snap.size,
		   snap.size >> (20 - PAGE_SHIFT));
	seq_printf(m, "host target:      %lu pages (%lu MiB)\n",
		   snap.host_target, snap.host_target >> (20 - PAGE_SHIFT));
	seq_printf(m, "target in force:  %lu pages (%lu MiB), set by %s\n",
		   snap.target, snap.target >> (20 - PAGE_SHIFT),
		   ub_reason_name(snap.target_source));
	seq_printf(m, "user override:    %s\n", snap.user_override ? "yes" : "no");
	seq_printf(m, "held by floor:    %s\n", snap.floor_held ? "yes" : "no");
	seq_printf(m, "capped after OOM: %s\n", snap.oom_capped ? "yes" : "no");
	seq_printf(m, "huge pages:       %lu of order %u (%lu MiB)\n",
		   snap.huge_pages, snap.huge_order,
		   (snap.huge_pages << snap.huge_order) >> (20 - PAGE_SHIFT));
	seq_printf(m, "pages migrating:  %lu\n", snap.isolated);
	seq_printf(m, "pages unanswered: %lu (the host may still discard them)\n",
		   snap.unanswered);
	seq_printf(m, "floor:            %llu bytes\n", set.floor);
	reserve = (u64)ub_pressure_reserve() << PAGE_SHIFT;
	seq_printf(m, "pressure reserve: %llu bytes (met: %s)\n", reserve,
		   snap.reserve_hit ? "yes" : "no");
	seq_printf(m, "inflate rate:     %llu bytes/s%s\n", set.inflate_rate,
		   set.inflate_rate ? "" : " (unlimited)");
	seq_printf(m, "deflate rate:     %llu bytes/s%s\n", set.deflate_rate,
		   set.deflate_rate ? "" : " (unlimited)");
	seq_printf(m, "oom deflate:      %s, %llu bytes per OOM\n",
		   set.oom_deflate ? "on" : "off", set.oom_deflate_size);
	ub_oom_notifier_stats(&oom_calls, &oom_reported);
	seq_printf(m, "oom notifier:     %lu calls, %lu pages reported freed\n",
		   oom_calls, oom_reported);
	for (i = 0; i < UB_STAT_NR; i++)
		seq_printf(m, "stat %-16s %llu\n", ub_stat_names[i],
			   ub_stat_read(i));
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(status);

static int backend_show(struct seq_file *m, void *unused)
{
	return ub_backend_debugfs_show(m);
}
DEFINE_SHOW_ATTRIBUTE(backend);

void ub_debugfs_init(void)
{
	/* debugfs is optional: errors here only cost the debug files */
	ub_debugfs_dir = debugfs_create_dir("balloon", NULL);
	debugfs_create_file("status", 0444, ub_debugfs_dir, NULL,
			    &status_fops);
	debugfs_create_file("backend", 0444, ub_debugfs_dir, NULL,
			    &backend_fops);
}

void ub_debugfs_exit(void)
{
	debugfs_remove_recursive(ub_debugfs_dir);
	ub_debugfs_dir = NULL;
}
