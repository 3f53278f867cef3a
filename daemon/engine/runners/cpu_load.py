"""How busy other programs keep this process's CPUs: the signal for running llama.cpp's passes over several
tokens on more threads only while the cores they need sit idle.

Linux only: `/proc/stat` gives each CPU's busy and idle time in clock ticks since boot (proc(5): user, nice,
system, idle, iowait, irq, softirq, steal, ...; guest time is already counted in user). Over a window, the busy
ticks of the CPUs this process may run on, less this process's own CPU time (`os.times`), are what other programs
used. Elsewhere (macOS, a /proc without stat) `available()` is False and callers keep to a fixed thread count.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PROC_STAT = Path("/proc/stat")
BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system irq softirq steal; idle (3) and iowait (4) are not busy


def usable_cpus() -> set[int]:
    """The CPU numbers this process may run on (its affinity mask where the OS has one, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def _busy_ticks(stat_text: str, cpus: set[int]) -> int:
    busy = 0
    for line in stat_text.splitlines():
        name, _, rest = line.partition(" ")
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            fields = rest.split()
            busy += sum(int(fields[i]) for i in BUSY_FIELDS if i < len(fields))
    return busy


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


class OtherProgramsLoad:
    """The cores' worth of CPU time other programs took on `cpus` lately.

    `cores_busy()` resamples when the last sample is at least `window_s` old and returns the average over the
    window that just ended (0.0 before a full window was seen); between samples it returns the last value, so it
    costs a file read at most every `window_s` seconds. A window as long as the engine sat idle averages over all
    of it: a program that started just before a request is seen one window later.
    `read_stat`, `own_seconds`, `clock`: for tests (the /proc/stat text, this process's CPU seconds, seconds)."""

    def __init__(self, cpus: set[int] | None = None, window_s: float = 0.1, read_stat=None, own_seconds=None,
                 clock=time.monotonic) -> None:
        self.cpus = cpus if cpus is not None else usable_cpus()
        self.window_s = window_s
        self.read_stat = read_stat or PROC_STAT.read_text
        self.own_seconds = own_seconds or _own_cpu_seconds
        self.clock = clock
        self.tick_s = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01
        self.last = self._sample()
        self.busy = 0.0

    @staticmethod
    def available() -> bool:
        try:
            return "cpu" in PROC_STAT.read_text()[:8]
        except OSError:
            return False

    def _sample(self) -> tuple[float, float, float]:
        return self.clock(), _busy_ticks(self.read_stat(), self.cpus) * self.tick_s, self.own_seconds()

    def cores_busy(self) -> float:
        now = self.clock()
        if now - self.last[0] >= self.window_s:
            sample = self._sample()
            wall = sample[0] - self.last[0]
            others = (sample[1] - self.last[1]) - (sample[2] - self.last[2])
            self.busy = max(0.0, others / wall)
            self.last = sample
        return self.busy
