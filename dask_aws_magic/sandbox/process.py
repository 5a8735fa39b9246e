"""Start user-data scripts as process groups, and make sure they end."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping

_PR_SET_PDEATHSIG = 1

# The leader of every instance's process group: a tiny init. It is a child subreaper, so every
# descendant that is orphaned is re-parented to it and it lives as long as any of them (a machine);
# in container mode it kills what is left once the main process exits, as a container ends with
# its PID 1. When the sandbox thread that started it dies (PR_SET_PDEATHSIG -> SIGUSR2) it SIGKILLs
# all its descendants, even those that left the group with setsid.
_INIT = r"""
import ctypes, os, signal, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER

def descendants():
    parents = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{entry}/stat").read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[0] != "Z":
            parents.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [os.getpid()]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found

def kill_everything(*_):
    # Again until none is left: a process may fork (or setsid) between one look and the kill.
    try:
        for _ in range(200):
            found = descendants()
            if not found:
                break
            for pid in found:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            try:
                while os.waitpid(-1, os.WNOHANG)[0]:
                    pass
            except ChildProcessError:
                pass
    finally:
        os.killpg(0, signal.SIGKILL)

signal.signal(signal.SIGUSR2, kill_everything)
signal.signal(signal.SIGTERM, lambda *_: None)  # the group gets it; exit once the children are gone
container, command = sys.argv[1] == "container", sys.argv[2:]
main = os.fork()
if main == 0:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"[sandbox] cannot run user-data: {exc}", flush=True)
    os._exit(127)
while True:
    try:
        pid, status = os.wait()
    except ChildProcessError:
        break
    if pid == main:
        print(f"[sandbox] user-data exited with status {os.waitstatus_to_exitcode(status)}", flush=True)
        if container:
            kill_everything()
"""


def _die_with_parent() -> None:
    # Runs in the child between fork and exec. The signal fires when the forking *thread* ends.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGUSR2, 0, 0, 0)


def spawn(argv: list[str], cwd: str, env: Mapping[str, str], console_path: str,
          container: bool = False) -> subprocess.Popen[bytes]:
    """Run `argv` under a per-instance init in a new session; all output appended to `console_path`.
    A `container` ends (everything left killed) when `argv`'s process exits; a machine runs on."""
    with open(console_path, "ab") as console:
        return subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _INIT, "container" if container else "machine", *argv],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )


def live_groups(pgids: set[int]) -> set[int]:
    """Those of `pgids` that still have a process that is not a zombie."""
    if not pgids:
        return set()
    live = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # Fields after the parenthesised command: state ppid pgrp ...
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and fields[0] != b"Z" and int(fields[2]) in pgids:
            live.add(int(fields[2]))
    return live


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def kill_groups(pgids: set[int], grace: float = 2.0) -> None:
    """SIGTERM each group, wait up to `grace` seconds, then SIGKILL what is left."""
    for pgid in pgids:
        signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    alive = set(pgids)
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = live_groups(alive)
    for pgid in alive:
        signal_group(pgid, signal.SIGKILL)
