// SPDX-License-Identifier: GPL-2.0
/*
 * /sys/kernel/balloon: the same interface on every hypervisor.
 * Sizes are bytes; writes take an optional K, M, G or T suffix (powers of
 * 1024). Bad input is refused whole and changes nothing.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/ctype.h>
#include <linux/kernel.h>
#include <linux/kobject.h>
#include <linux/kstrtox.h>
#include <linux/string.h>
#include <linux/sysfs.h>

#include "uniballoon.h"

static struct kobject *ub_kobj;

/* "<digits>[KMGT]" with an optional trailing newline, nothing else. */
static int ub_parse_bytes(const char *buf, size_t count, u64 *out)
{
	unsigned int shift = 0;
	char tmp[32];
	u64 val;
	int err;

	if (count && buf[count - 1] == '\n')
		count--;
	if (!count || count >= sizeof(tmp))
		return -EINVAL;
	memcpy(tmp, buf, count);
	tmp[count] = '\0';

	switch (tolower(tmp[count - 1])) {
	case 'k':
		shift = 10;
		break;
	case 'm':
		shift = 20;
		break;
	case 'g':
		shift = 30;
		break;
	case 't':
		shift = 40;
		break;
	}
	if (shift)
		tmp[--count] = '\0';
	/*
	 * kstrtoull would take a leading '+' and a trailing newline (so
	 * "5\n\n" would pass); we take digits only.
	 */
	if (!count || strspn(tmp, "0123456789") != count)
		return -EINVAL;
	err = kstrtoull(tmp, 10, &val);
	if (err)
		return err;
	if (val > (U64_MAX >> shift))
		return -ERANGE;
	*out = val << shift;
	return 0;
}

static int ub_may_write(void)
{
	return capable(CAP_SYS_ADMIN) ? 0 : -EPERM;
}

static ssize_t ub_show_pages(char *buf, unsigned long pages)
{
	return sysfs_emit(buf, "%llu\n", (u64)pages << PAGE_SHIFT);
}

static ssize_t backend_show(struct kobject *kobj, struct kobj_attribute *attr,
			    char *buf)
{
	struct ub_snapshot snap;

	ub_snapshot(&snap);
	return sysfs_emit(buf, "%s\n", snap.backend);
}

static const struct {
	unsigned long flag;
	const char *name;
} ub_feature_names[] = {
	{ UB_FEAT_TELL_HOST,	"tell_host" },
	{ UB_FEAT_STATS,	"stats" },
	{ UB_FEAT_OOM_DEFLATE,	"oom_deflate" },
	{ UB_FEAT_MIGRATION,	"migration" },
	{ UB_FEAT_FREE_PAGE_REPORTING, "free_page_reporting" },
	{ UB_FEAT_FREE_PAGE_HINT, "free_page_hint" },
	{ UB_FEAT_TARGET_DRIVEN, "target_driven" },
};

static ssize_t features_show(struct kobject *kobj, struct kobj_attribute *attr,
			     char *buf)
{
	struct ub_snapshot snap;
	ssize_t len;
	int i;

	ub_snapshot(&snap);
	if (!strcmp(snap.backend, "none"))
		return sysfs_emit(buf, "\n");
	/* what the core gives every backend, then what this one adds */
	len = sysfs_emit(buf, "target floor inflate_rate deflate_rate");
	for (i = 0; i < ARRAY_SIZE(ub_feature_names); i++)
		if (snap.features & ub_feature_names[i].flag)
			len += sysfs_emit_at(buf, len, " %s",
					     ub_feature_names[i].name);
	/*
	 * A driver of the hypervisor's moves the pages: the engine can only
	 * set its target in steps, so these knobs hold within a step.
	 */
	if (snap.features & UB_FEAT_TARGET_DRIVEN)
		len += sysfs_emit_at(buf, len, " best_effort=floor,inflate_rate,deflate_rate%s",
				     snap.features & UB_FEAT_OOM_DEFLATE ?
				     ",oom_deflate" : "");
	len += sysfs_emit_at(buf, len, "\n");
	return len;
}

static ssize_t size_show(struct kobject *kobj, struct kobj_attribute *attr,
			 char *buf)
{
	struct ub_snapshot snap;

	ub_snapshot(&snap);
	return ub_show_pages(buf, snap.size);
}

static ssize_t host_target_show(struct kobject *kobj,
				struct kobj_attribute *attr, char *buf)
{
	struct ub_snapshot snap;

	ub_snapshot(&snap);
	return ub_show_pages(buf, snap.host_target);
}

static ssize_t target_show(struct kobject *kobj, struct kobj_attribute *attr,
			   char *buf)
{
	struct ub_snapshot snap;

	ub_snapshot(&snap);
	return ub_show_pages(buf, snap.target);
}

static ssize_t target_store(struct kobject *kobj, struct kobj_attribute *attr,
			    const char *buf, size_t count)
{
	u64 bytes;
	int err;

	err = ub_may_write();
	if (err)
		return err;
	if (sysfs_streq(buf, "host"))
		err = ub_clear_user_target();
	else
		err = ub_parse_bytes(buf, count, &bytes) ?:
		      ub_set_user_target(bytes);
	return err ?: count;
}

static ssize_t target_source_show(struct kobject *kobj,
				  struct kobj_attribute *attr, char *buf)
{
	struct ub_snapshot snap;

	ub_snapshot(&snap);
	return sysfs_emit(buf, "%s\n", ub_reason_name(snap.target_source));
}

static ssize_t pressure_reserve_show(struct kobject *kobj,
				     struct kobj_attribute *attr, char *buf)
{
	return ub_show_pages(buf, ub_pressure_reserve());
}

static ssize_t floor_show(struct kobject *kobj, struct kobj_attribute *attr,
			  char *buf)
{
	struct ub_settings set;

	ub_get_settings(&set);
	return sysfs_emit(buf, "%llu\n", set.floor);
}

static ssize_t floor_store(struct kobject *kobj, struct kobj_attribute *attr,
			   const char *buf, size_t count)
{
	u64 bytes;
	int err;

	err = ub_may_write() ?: ub_parse_bytes(buf, count, &bytes) ?:
	      ub_set_floor(bytes);
	return err ?: count;
}

static ssize_t rate_show(char *buf, bool inflate)
{
	struct ub_settings set;

	ub_get_settings(&set);
	return sysfs_emit(buf, "%llu\n",
			  inflate ? set.inflate_rate : set.deflate_rate);
}

static ssize_t rate_store(const char *buf, size_t count, bool inflate)
{
	u64 rate;
	int err;

	err = ub_may_write() ?: ub_parse_bytes(buf, count, &rate);
	if (err)
		return err;
	err = ub_set_rate(inflate, rate);
	return err ?: count;
}

static ssize_t inflate_rate_show(struct kobject *kobj,
				 struct kobj_attribute *attr, char *buf)
{
	return rate_show(buf, true);
}

static ssize_t inflate_rate_store(struct kobject *kobj,
				  struct kobj_attribute *attr,
				  const char *buf, size_t count)
{
	return rate_store(buf, count, true);
}

static ssize_t deflate_rate_show(struct kobject *kobj,
				 struct kobj_attribute *attr, char *buf)
{
	return rate_show(buf, false);
}

static ssize_t deflate_rate_store(struct kobject *kobj,
				  struct kobj_attribute *attr,
				  const char *buf, size_t count)
{
	return rate_store(buf, count, false);
}

static ssize_t oom_deflate_show(struct kobject *kobj,
				struct kobj_attribute *attr, char *buf)
{
	struct ub_settings set;

	ub_get_settings(&set);
	return sysfs_emit(buf, "%d\n", set.oom_deflate);
}

static ssize_t oom_deflate_store(struct kobject *kobj,
				 struct kobj_attribute *attr,
				 const char *buf, size_t count)
{
	bool on = sysfs_streq(buf, "1");
	int err;

	err = ub_may_write();
	if (err)
		return err;
	if (!on && !sysfs_streq(buf, "0"))
		return -EINVAL;
	err = ub_set_oom_deflate(on);
	return err ?: count;
}

static ssize_t oom_deflate_size_show(struct kobject *kobj,
				     struct kobj_attribute *attr, char *buf)
{
	struct ub_settings set;

	ub_get_settings(&set);
	return sysfs_emit(buf, "%llu\n", set.oom_deflate_size);
}

static ssize_t oom_deflate_size_store(struct kobject *kobj,
				      struct kobj_attribute *attr,
				      const char *buf, size_t count)
{
	u64 bytes;
	int err;

	err = ub_may_write() ?: ub_parse_bytes(buf, count, &bytes);
	if (err)
		return err;
	err = ub_set_oom_deflate_size(bytes);
	return err ?: count;
}

static struct kobj_attribute ub_attrs[] = {
	__ATTR_RO(backend),
	__ATTR_RO(features),
	__ATTR_RO(size),
	__ATTR_RO(host_target),
	__ATTR_RW(target),
	__ATTR_RO(target_source),
	__ATTR_RO(pressure_reserve),
	__ATTR_RW(floor),
	__ATTR_RW(inflate_rate),
	__ATTR_RW(deflate_rate),
	__ATTR_RW(oom_deflate),
	__ATTR_RW(oom_deflate_size),
};

static struct attribute *ub_attr_list[ARRAY_SIZE(ub_attrs) + 1];

static const struct attribute_group ub_group = {
	.attrs = ub_attr_list,
};

/* stats/<name>: one counter per file, found by the attribute's index. */
static struct kobj_attribute ub_stat_attrs[UB_STAT_NR];
static struct attribute *ub_stat_list[UB_STAT_NR + 1];

static ssize_t stat_show(struct kobject *kobj, struct kobj_attribute *attr,
			 char *buf)
{
	return sysfs_emit(buf, "%llu\n", ub_stat_read(attr - ub_stat_attrs));
}

static const struct attribute_group ub_stats_group = {
	.name = "stats",
	.attrs = ub_stat_list,
};

int ub_sysfs_init(void)
{
	int i, err;

	for (i = 0; i < ARRAY_SIZE(ub_attrs); i++)
		ub_attr_list[i] = &ub_attrs[i].attr;
	for (i = 0; i < UB_STAT_NR; i++) {
		sysfs_attr_init(&ub_stat_attrs[i].attr);
		ub_stat_attrs[i].attr.name = ub_stat_names[i];
		ub_stat_attrs[i].attr.mode = 0444;
		ub_stat_attrs[i].show = stat_show;
		ub_stat_list[i] = &ub_stat_attrs[i].attr;
	}

	ub_kobj = kobject_create_and_add("balloon", kernel_kobj);
	if (!ub_kobj)
		return -ENOMEM;
	err = sysfs_create_group(ub_kobj, &ub_group);
	if (!err)
		err = sysfs_create_group(ub_kobj, &ub_stats_group);
	if (err) {
		kobject_put(ub_kobj);
		ub_kobj = NULL;
	}
	return err;
}

void ub_sysfs_exit(void)
{
	kobject_put(ub_kobj);
	ub_kobj = NULL;
}
