// SPDX-License-Identifier: GPL-2.0
/*
 * Giving memory back when the guest needs it, if oom_deflate allows it:
 *
 * - the OOM notifier: before the OOM killer picks a victim, the kernel asks
 *   its notifiers to free memory; if the balloon gives pages back, nobody
 *   dies;
 * - a shrinker: under reclaim pressure with MemAvailable below the threshold
 *   (engine.c), the balloon releases pages before the guest thrashes its
 *   page cache, which can keep the OOM killer from ever being reached.
 */
#include <linux/notifier.h>
#include <linux/oom.h>
#include <linux/shrinker.h>

#include "uniballoon.h"

static int ub_oom_notify(struct notifier_block *nb, unsigned long unused,
			 void *parm)
{
	unsigned long *freed = parm;

	*freed += ub_oom_deflate();
	return NOTIFY_OK;
}

static struct notifier_block ub_oom_nb = {
	.notifier_call = ub_oom_notify,
};

static unsigned long ub_shrink_count(struct shrinker *shrinker,
				     struct shrink_control *sc)
{
	return ub_pressure_count();
}

static unsigned long ub_shrink_scan(struct shrinker *shrinker,
				    struct shrink_control *sc)
{
	return ub_pressure_deflate(sc->nr_to_scan) ?: SHRINK_STOP;
}

#ifdef UB_HAVE_SHRINKER_ALLOC
static struct shrinker *ub_shrinker;

static int ub_shrinker_register(void)
{
	ub_shrinker = shrinker_alloc(0, "uniballoon");
	if (!ub_shrinker)
		return -ENOMEM;
	ub_shrinker->count_objects = ub_shrink_count;
	ub_shrinker->scan_objects = ub_shrink_scan;
	ub_shrinker->seeks = DEFAULT_SEEKS;
	shrinker_register(ub_shrinker);
	return 0;
}

static void ub_shrinker_unregister(void)
{
	shrinker_free(ub_shrinker);
}
#else
static struct shrinker ub_shrinker = {
	.count_objects	= ub_shrink_count,
	.scan_objects	= ub_shrink_scan,
	.seeks		= DEFAULT_SEEKS,
};

static int ub_shrinker_register(void)
{
	return register_shrinker(&ub_shrinker, "uniballoon");
}

static void ub_shrinker_unregister(void)
{
	unregister_shrinker(&ub_shrinker);
}
#endif

int ub_oom_init(void)
{
	int err = register_oom_notifier(&ub_oom_nb);

	if (err)
		return err;
	err = ub_shrinker_register();
	if (err)
		unregister_oom_notifier(&ub_oom_nb);
	return err;
}

void ub_oom_exit(void)
{
	ub_shrinker_unregister();
	unregister_oom_notifier(&ub_oom_nb);
}
