/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Differences between kernel versions, decided by compile tests against the
 * target kernel's headers (src/compat/configure.sh writes compat_config.h),
 * never by version numbers.
 */
#ifndef UB_COMPAT_H
#define UB_COMPAT_H

#include "compat_config.h"

/* Mainline renamed balloon_compaction.h to balloon.h. */
#ifdef UB_HAVE_LINUX_BALLOON_H
#include <linux/balloon.h>
#else
#include <linux/balloon_compaction.h>
#endif

/*
 * Linux 6.7 allocates shrinkers (shrinker_alloc, shrinker_register,
 * shrinker_free); before it a caller embedded one and called
 * register_shrinker(). The sources use the new API; this maps it onto the
 * old one. A registration that fails (old API only) leaves the shrinker
 * unregistered, as the new API cannot report it either.
 */
#ifndef UB_HAVE_SHRINKER_ALLOC
#include <linux/shrinker.h>
#include <linux/slab.h>

struct ub_compat_shrinker {
	struct shrinker shrinker;
	const char *name;
};

static inline struct shrinker *shrinker_alloc(unsigned int flags,
					      const char *name)
{
	struct ub_compat_shrinker *c = kzalloc(sizeof(*c), GFP_KERNEL);

	if (!c)
		return NULL;
	c->shrinker.flags = flags;
	c->shrinker.seeks = DEFAULT_SEEKS;
	c->name = name;
	return &c->shrinker;
}

static inline void shrinker_register(struct shrinker *shrinker)
{
	struct ub_compat_shrinker *c =
		container_of(shrinker, struct ub_compat_shrinker, shrinker);

	if (register_shrinker(shrinker, "%s", c->name))
		pr_warn("shrinker %s not registered\n", c->name);
}

static inline void shrinker_free(struct shrinker *shrinker)
{
	if (!shrinker)
		return;
	unregister_shrinker(shrinker);
	kfree(container_of(shrinker, struct ub_compat_shrinker, shrinker));
}
#endif

#endif /* UB_COMPAT_H */
