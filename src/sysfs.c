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
#include <linux/moduleparam.h>
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
	/* ABI: the word users know for a size mover */
	{ UB_FEAT_SIZE_MOVER,	"target_driven" },
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
	 * hand it a size in steps, so these knobs hold within a step.
	 */
	if (snap.features & UB_FEAT_SIZE_MOVER)
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

static ssize_t blocked_show(struct kobject *kobj, struct kobj_attribute *attr,
			    char *buf)
{
	struct ub_snapshot snap;

	ub_snapshot(&snap);
	return sysfs_emit(buf, "%s\n", ub_block_name(snap.blocked));
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

/*
 * The settings' parsers: the files below and the module parameters (at the
 * end) go through them, so both take the same input and fail the same way.
 */
static int floor_set(const char *buf, size_t count)
{
	u64 bytes;

	return ub_parse_bytes(buf, count, &bytes) ?: ub_set_floor(bytes);
}

static ssize_t floor_store(struct kobject *kobj, struct kobj_attribute *attr,
			   const char *buf, size_t count)
{
	return ub_may_write() ?: floor_set(buf, count) ?: count;
}

static ssize_t rate_show(char *buf, bool inflate)
{
	struct ub_settings set;

	ub_get_settings(&set);
	return sysfs_emit(buf, "%llu\n",
			  inflate ? set.inflate_rate : set.deflate_rate);
}

static int rate_set(const char *buf, size_t count, bool inflate)
{
	u64 rate;

	return ub_parse_bytes(buf, count, &rate) ?: ub_set_rate(inflate, rate);
}

static int inflate_rate_set(const char *buf, size_t count)
{
	return rate_set(buf, count, true);
}

static int deflate_rate_set(const char *buf, size_t count)
{
	return rate_set(buf, count, false);
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
	return ub_may_write() ?: inflate_rate_set(buf, count) ?: count;
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
	return ub_may_write() ?: deflate_rate_set(buf, count) ?: count;
}

static ssize_t oom_deflate_show(struct kobject *kobj,
				struct kobj_attribute *attr, char *buf)
{
	struct ub_settings set;

	ub_get_settings(&set);
	return sysfs_emit(buf, "%d\n", set.oom_deflate);
}

static int oom_deflate_set(const char *buf, size_t count)
{
	bool on = sysfs_streq(buf, "1");

	if (!on && !sysfs_streq(buf, "0"))
		return -EINVAL;
	return ub_set_oom_deflate(on);
}

static ssize_t oom_deflate_store(struct kobject *kobj,
				 struct kobj_attribute *attr,
				 const char *buf, size_t count)
{
	return ub_may_write() ?: oom_deflate_set(buf, count) ?: count;
}

static ssize_t oom_deflate_size_show(struct kobject *kobj,
				     struct kobj_attribute *attr, char *buf)
{
	struct ub_settings set;

	ub_get_settings(&set);
	return sysfs_emit(buf, "%llu\n", set.oom_deflate_size);
}

static int oom_deflate_size_set(const char *buf, size_t count)
{
	u64 bytes;

	return ub_parse_bytes(buf, count, &bytes) ?:
	       ub_set_oom_deflate_size(bytes);
}

static ssize_t oom_deflate_size_store(struct kobject *kobj,
				      struct kobj_attribute *attr,
				      const char *buf, size_t count)
{
	return ub_may_write() ?: oom_deflate_size_set(buf, count) ?: count;
}

static struct kobj_attribute ub_attrs[] = {
	__ATTR_RO(backend),
	__ATTR_RO(features),
	__ATTR_RO(size),
	__ATTR_RO(host_target),
	__ATTR_RW(target),
	__ATTR_RO(target_source),
	__ATTR_RO(blocked),
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

/*
 * Module parameters, for /etc/modprobe.d: the same five settings, applied
 * at load by the parsers and setters the files use, so one code path takes
 * and checks a value however it comes. They are 0444 there and read the
 * setting in force; the files above stay the live interface.
 *
 * A bad value fails the load (ub_params_check()), rather than loading
 * without it: a floor or a rate left out at boot lets the host take memory
 * the guest was told it would keep, and it goes unnoticed, where a module
 * that does not load is seen (modprobe fails, udev logs it) and the guest
 * keeps all its memory meanwhile. Each bad value gets one line that names
 * it and says why; the set callback returns 0 so that the kernel does not
 * add its own, vaguer line, and the init refuses to run.
 */
static bool ub_param_bad;

struct ub_param {
	int (*set)(const char *buf, size_t count);
	ssize_t (*show)(struct kobject *kobj, struct kobj_attribute *attr,
			char *buf);
	const char *syntax;	/* what -EINVAL means */
	const char *range;	/* what -ERANGE means, if it can happen */
};

#define UB_SIZE_SYNTAX	"bytes, digits with an optional K, M, G or T suffix"
#define UB_RATE_RANGE	"not 0 (unlimited) and below one page per second"

static struct ub_param ub_param_floor = {
	.set = floor_set,
	.show = floor_show,
	.syntax = UB_SIZE_SYNTAX,
	.range = "more than the guest's memory",
};

static struct ub_param ub_param_inflate_rate = {
	.set = inflate_rate_set,
	.show = inflate_rate_show,
	.syntax = UB_SIZE_SYNTAX " per second",
	.range = UB_RATE_RANGE,
};

static struct ub_param ub_param_deflate_rate = {
	.set = deflate_rate_set,
	.show = deflate_rate_show,
	.syntax = UB_SIZE_SYNTAX " per second",
	.range = UB_RATE_RANGE,
};

static struct ub_param ub_param_oom_deflate = {
	.set = oom_deflate_set,
	.show = oom_deflate_show,
	.syntax = "0 or 1",
};

static struct ub_param ub_param_oom_deflate_size = {
	.set = oom_deflate_size_set,
	.show = oom_deflate_size_show,
	.syntax = UB_SIZE_SYNTAX,
	.range = "below one page, or more than the guest's memory",
};

static int ub_param_set(const char *val, const struct kernel_param *kp)
{
	const struct ub_param *p = kp->arg;
	int err = p->set(val, strlen(val));

	if (err) {
		pr_err("%s=%s: %s %s; not loading\n", kp->name, val,
		       err == -ERANGE ? "out of range:" : "invalid, want",
		       err == -ERANGE ? p->range : p->syntax);
		ub_param_bad = true;
	}
	return 0;
}

static int ub_param_get(char *buf, const struct kernel_param *kp)
{
	const struct ub_param *p = kp->arg;

	return p->show(NULL, NULL, buf);
}

static const struct kernel_param_ops ub_param_ops = {
	.set = ub_param_set,
	.get = ub_param_get,
};

module_param_cb(floor, &ub_param_ops, &ub_param_floor, 0444);
MODULE_PARM_DESC(floor, "bytes of MemAvailable inflation leaves the guest (K, M, G, T)");
module_param_cb(inflate_rate, &ub_param_ops, &ub_param_inflate_rate, 0444);
MODULE_PARM_DESC(inflate_rate, "bytes per second, 0 = unlimited (K, M, G, T)");
module_param_cb(deflate_rate, &ub_param_ops, &ub_param_deflate_rate, 0444);
MODULE_PARM_DESC(deflate_rate, "bytes per second, 0 = unlimited (K, M, G, T)");
module_param_cb(oom_deflate, &ub_param_ops, &ub_param_oom_deflate, 0444);
MODULE_PARM_DESC(oom_deflate, "1: deflate on OOM where the host allows it, 0: never");
module_param_cb(oom_deflate_size, &ub_param_ops, &ub_param_oom_deflate_size, 0444);
MODULE_PARM_DESC(oom_deflate_size, "bytes given back per OOM deflation (K, M, G, T)");

/* Called first by the module's init: a bad parameter above refuses it. */
int ub_params_check(void)
{
	return ub_param_bad ? -EINVAL : 0;
}

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
