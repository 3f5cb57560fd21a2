// SPDX-License-Identifier: GPL-2.0
/* Instantiates the tracepoints declared in ub_trace.h. */
#define CREATE_TRACE_POINTS
#include "ub_trace.h"
