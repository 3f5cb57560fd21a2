/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Tracepoints of the uniballoon module: tracepoint:balloon:* in bpftrace.
 * Fields are plain integers and fixed char arrays so that bpftrace 0.17
 * (Debian 12) reads them as args->field.
 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM balloon

#if !defined(UB_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define UB_TRACE_H

#include <linux/tracepoint.h>
#include <linux/string.h>

DECLARE_EVENT_CLASS(balloon_batch,
	TP_PROTO(unsigned int pages, unsigned int order, u64 duration_ns),
	TP_ARGS(pages, order, duration_ns),
	TP_STRUCT__entry(
		__field(u32, pages)
		__field(u32, order)
		__field(u64, duration_ns)
	),
	TP_fast_assign(
		__entry->pages = pages;
		__entry->order = order;
		__entry->duration_ns = duration_ns;
	),
	TP_printk("pages=%u order=%u duration_ns=%llu",
		  __entry->pages, __entry->order, __entry->duration_ns)
);

/* One event per batch the host took. */
DEFINE_EVENT(balloon_batch, inflate,
	TP_PROTO(unsigned int pages, unsigned int order, u64 duration_ns),
	TP_ARGS(pages, order, duration_ns));

/* One event per batch given back to the guest. */
DEFINE_EVENT(balloon_batch, deflate,
	TP_PROTO(unsigned int pages, unsigned int order, u64 duration_ns),
	TP_ARGS(pages, order, duration_ns));

TRACE_EVENT(target,
	TP_PROTO(u64 old_bytes, u64 new_bytes, const char *reason),
	TP_ARGS(old_bytes, new_bytes, reason),
	TP_STRUCT__entry(
		__field(u64, old_bytes)
		__field(u64, new_bytes)
		__array(char, reason, 8)
	),
	TP_fast_assign(
		__entry->old_bytes = old_bytes;
		__entry->new_bytes = new_bytes;
		strscpy(__entry->reason, reason, sizeof(__entry->reason));
	),
	TP_printk("old_bytes=%llu new_bytes=%llu reason=%s",
		  __entry->old_bytes, __entry->new_bytes, __entry->reason)
);

TRACE_EVENT(oom_deflate,
	TP_PROTO(unsigned int pages, u64 size_bytes),
	TP_ARGS(pages, size_bytes),
	TP_STRUCT__entry(
		__field(u32, pages)
		__field(u64, size_bytes)
	),
	TP_fast_assign(
		__entry->pages = pages;
		__entry->size_bytes = size_bytes;
	),
	TP_printk("pages=%u size_bytes=%llu",
		  __entry->pages, __entry->size_bytes)
);

/*
 * The balloon is held back from its target (sysfs "blocked"), and the
 * worker looks again in retry_ms; reason "none" when it moves again.
 */
TRACE_EVENT(blocked,
	TP_PROTO(const char *reason, u32 retry_ms),
	TP_ARGS(reason, retry_ms),
	TP_STRUCT__entry(
		__array(char, reason, 16)
		__field(u32, retry_ms)
	),
	TP_fast_assign(
		strscpy(__entry->reason, reason, sizeof(__entry->reason));
		__entry->retry_ms = retry_ms;
	),
	TP_printk("reason=%s retry_ms=%u", __entry->reason, __entry->retry_ms)
);

/* Protocol errors and host resets, from whichever backend is active. */
TRACE_EVENT(backend,
	TP_PROTO(const char *backend, const char *event, int err),
	TP_ARGS(backend, event, err),
	TP_STRUCT__entry(
		__array(char, backend, 16)
		__array(char, event, 16)
		__field(s32, err)
	),
	TP_fast_assign(
		strscpy(__entry->backend, backend, sizeof(__entry->backend));
		strscpy(__entry->event, event, sizeof(__entry->event));
		__entry->err = err;
	),
	TP_printk("backend=%s event=%s err=%d",
		  __entry->backend, __entry->event, __entry->err)
);

#endif /* UB_TRACE_H */

#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE ub_trace
#include <trace/define_trace.h>
