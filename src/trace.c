// SPDX-License-Identifier: GPL-2.0
/* Instantiates the tracepoints declared in ub_trace.h. */
#define CREATE_TRACE_POINTS
#include "ub_trace.h"

#include "engine.h"

/* A backend's or the engine's failed exchange: counted and traced. */
void ub_backend_error(const char *event, int err)
{
	const struct ub_backend *ops = READ_ONCE(ub.ops);

	ub_count(UB_STAT_HOST_ERRORS, 1);
	trace_backend(ops ? ops->name : "none", event, err);
}
