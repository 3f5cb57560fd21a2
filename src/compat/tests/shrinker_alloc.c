// SPDX-License-Identifier: GPL-2.0
/* Linux 6.7: shrinker_alloc()/shrinker_register() replace register_shrinker(). */
#include <linux/module.h>
#include <linux/shrinker.h>

static struct shrinker * __maybe_unused test(void)
{
	struct shrinker *s = shrinker_alloc(0, "test");

	if (s)
		shrinker_register(s);
	return s;
}
MODULE_LICENSE("GPL");
