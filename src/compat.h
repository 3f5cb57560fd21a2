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

#endif /* UB_COMPAT_H */
