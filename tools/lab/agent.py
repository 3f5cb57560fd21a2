#!/usr/bin/python3
"""Guest agent for the uniballoon lab (runs inside the guest, stdlib only).

Protocol on the virtio-serial port "lab.agent", one JSON object per line:
  request  {"id": any, "cmd": "shell command", "timeout": seconds}
  reply    {"id": same, "rc": int, "out": "combined stdout+stderr", "timed_out": bool}
  {"id": any, "ping": true} is answered at once with rc 0 and no process (boot-readiness probe),
  and "time": the guest's time.time() when it answered.
Requests run concurrently (one thread each) with bash; a command that exceeds its timeout has
its whole process group killed and gets rc 124.

When started as PID 1 the process forks: the child serves requests, the parent only reaps
orphaned processes (PID 1's job) and powers the VM off if the server ever dies.
"""
import glob
import json
import os
import signal
import subprocess
import sys
import threading
import time

PORT_NAME = "lab.agent"
WORKDIR = os.environ.get("labwork", "/")


def log(msg):
    print(f"lab-agent: {msg}", file=sys.stderr, flush=True)


def find_port(deadline_s=30):
    """Device node of our port. No udev here, so the /dev/virtio-ports symlink usually
    does not exist: map the name through sysfs instead."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        link = f"/dev/virtio-ports/{PORT_NAME}"
        if os.path.exists(link):
            return link
        for f in glob.glob("/sys/class/virtio-ports/*/name"):
            with open(f) as fh:
                if fh.read().strip() == PORT_NAME:
                    return "/dev/" + os.path.basename(os.path.dirname(f))
        time.sleep(0.1)
    raise RuntimeError(f"virtio port {PORT_NAME} not found")


class Server:
    def __init__(self, path):
        self.fd = os.open(path, os.O_RDWR)
        self.wlock = threading.Lock()

    def send(self, obj):
        data = (json.dumps(obj) + "\n").encode()
        with self.wlock:
            try:
                while data:
                    n = os.write(self.fd, data)
                    data = data[n:]
            except OSError as e:  # host not connected: the reply is lost, nothing else to do
                log(f"write failed: {e}")

    def handle(self, req):
        rid, cmd = req.get("id"), req.get("cmd", "")
        timeout = req.get("timeout") or None
        p = subprocess.Popen(["/bin/bash", "-c", cmd], cwd=WORKDIR, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True)  # own process group, so a timeout kills all of it
        timed_out = False
        try:
            try:
                out, _ = p.communicate(timeout=timeout)
            except (OverflowError, ValueError) as e:
                # The clock under the timeout went wrong (seen in a Xen dom0 under TCG:
                # "timestamp too large" from subprocess's wait loop, which killed this thread
                # and lost the reply). Finish the command without a timeout: the host keeps
                # its own deadline for the answer.
                log(f"timeout arithmetic failed ({e!r}); waiting without a timeout")
                out, _ = p.communicate()
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                out, _ = p.communicate(timeout=5)
            except subprocess.TimeoutExpired:  # a descendant escaped the group and holds the pipe
                out = b""
                p.kill()
                p.wait()
        rc = 124 if timed_out else p.returncode
        self.send({"id": rid, "rc": rc, "out": out.decode(errors="replace"), "timed_out": timed_out})

    def serve(self):
        buf = b""
        while True:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                # EOF means "host side not connected" (virtio_console returns 0 then, and poll
                # reports POLLHUP, so there is nothing to block on): retry until it connects.
                time.sleep(0.1)
                continue
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if not line.strip():
                    continue
                try:
                    req = json.loads(line)
                except ValueError as e:
                    self.send({"id": None, "rc": -1, "out": f"bad request: {e}", "timed_out": False})
                    continue
                if req.get("ping"):
                    # with the guest's clock: a host can map its own times onto it
                    self.send({"id": req.get("id"), "rc": 0, "out": "", "timed_out": False,
                               "time": time.time()})
                    continue
                threading.Thread(target=self.handle, args=(req,), daemon=True).start()


def poweroff():
    import ctypes  # only needed here; keeps agent start-up (over 9p, under TCG) shorter
    os.sync()
    ctypes.CDLL(None, use_errno=True).reboot(0x4321FEDC)  # LINUX_REBOOT_CMD_POWER_OFF


def main():
    if os.getpid() == 1:
        child = os.fork()
        if child:
            while True:  # PID 1: reap every orphan; if the server dies, end the VM
                pid, status = os.wait()
                if pid == child:
                    log(f"server exited (status {status}), powering off")
                    poweroff()
    try:
        port = find_port()
        log(f"serving on {port}")
        Server(port).serve()
    except BaseException as e:
        log(f"fatal: {e!r}")
        raise


if __name__ == "__main__":
    main()
