"""KTAP-style results for make check, safe to use from parallel guest jobs.

Each job (one guest on one kernel) runs in its own thread; its lines are
held back and printed in one piece when the job ends, numbered then, so
two guests running side by side never interleave their output.
"""
import os
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor

results = {"passed": 0, "failed": 0, "skipped": 0}
figures = []            # (kernel, what, value) for the closing report
_lock = threading.Lock()
_local = threading.local()


def _emit(lines):
    with _lock:
        for kind, text in lines:
            if kind == "result":
                ok, skip, name, detail = text
                n = sum(results.values()) + 1
                if skip:
                    results["skipped"] += 1
                    print(f"ok {n} {name} # SKIP {detail}", flush=True)
                    continue
                results["passed" if ok else "failed"] += 1
                print(f"{'ok' if ok else 'not ok'} {n} {name}", flush=True)
                for line in str(detail).rstrip().splitlines()[-40:]:
                    if line:
                        print(f"#   {line}", flush=True)
            else:
                print(text, flush=True)


def _out(kind, text):
    buf = getattr(_local, "buf", None)
    if buf is None:
        _emit([(kind, text)])
    else:
        buf.append((kind, text))


def report(ok, name, detail="", skip=False):
    _out("result", (ok, skip, name, detail or ""))


def note(text):
    """A '# ...' diagnostic line, kept with its job's results."""
    _out("note", f"# {text}")


def figure(kver, what, value):
    with _lock:
        figures.append((kver, what, value))


def test(name, fn, *args):
    """Run one test; an exception or a failed assert is a failure.
    A test that returns "SKIP: why" could not run here."""
    try:
        detail = fn(*args)
        if isinstance(detail, str) and detail.startswith("SKIP: "):
            report(True, name, detail[6:], skip=True)
            return True
        report(True, name, detail or "")
        return True
    except Exception as e:  # noqa: BLE001 - any failure is reported, the run goes on
        report(False, name, f"{type(e).__name__}: {e}\n" +
               ("" if isinstance(e, (AssertionError, TimeoutError)) else traceback.format_exc()))
        return False


def _run_job(name, fn, args):
    _local.buf = []
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - a dead guest fails, the run goes on
        report(False, f"{name} ran", f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
    finally:
        lines, _local.buf = _local.buf, None
        _emit(lines)


def run_jobs(jobs, parallel=None):
    """jobs: list of (name, fn, args). Runs up to `parallel` at once
    (LAB_PARALLEL, default 2: two -smp 1 guests on a 2-core machine)."""
    if parallel is None:
        parallel = int(os.environ.get("LAB_PARALLEL", "2"))
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        futures = [pool.submit(_run_job, name, fn, args) for name, fn, args in jobs]
        for f in futures:
            f.result()


def summary():
    if figures:
        print("# figures:")
        for k, what, value in figures:
            print(f"#   {k}: {what}: {value}")
    print(f"{results['passed']} passed, {results['failed']} failed, {results['skipped']} skipped", flush=True)
    return 1 if results["failed"] else 0
