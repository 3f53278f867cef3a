"""How many CPUs this process may use, and how busy other programs keep them: the signal for running llama.cpp's
passes over several tokens on more threads only while the cores they need sit idle.

Linux only: `/proc/stat` gives each CPU's busy and idle time in clock ticks since boot (proc(5): user, nice,
system, idle, iowait, irq, softirq, steal, ...; guest time is already counted in user). Over a window, the busy
ticks of the CPUs this process may run on, less this process's own CPU time (`os.times`), are what other programs
used. Elsewhere (macOS, a /proc without stat, a
container whose /proc/stat numbers CPUs otherwise than its affinity mask) `available()` is False and callers keep
to a fixed thread count.
"""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path

PROC_STAT = Path("/proc/stat")
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" in microseconds, or "max ..."
BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system irq softirq steal; idle (3) and iowait (4) are not busy


def usable_cpus() -> set[int]:
    """The CPU numbers this process may run on (its affinity mask where the OS has one, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def usable_cpu_count(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """How many CPUs' worth of time this process may use: its affinity mask, capped by a cgroup v2 CPU quota
    (`docker --cpus=2` on a larger host: 2)."""
    count = len(usable_cpus())
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return count


def default_threads() -> int:
    """Threads for a single-token step when settings say 0: half the usable CPUs (the editor and the rest of the
    desktop share the machine, and a thread that waits for a busy core stalls every step)."""
    return max(1, usable_cpu_count() // 2)


def busy_ticks(stat_text: str) -> dict[int, int]:
    """Each CPU's busy clock ticks since boot, by CPU number, from a /proc/stat text."""
    ticks = {}
    for line in stat_text.splitlines():
        name, _, rest = line.partition(" ")
        if name.startswith("cpu") and name[3:].isdigit():
            fields = rest.split()
            ticks[int(name[3:])] = sum(int(fields[i]) for i in BUSY_FIELDS if i < len(fields))
    return ticks


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


class OtherProgramsLoad:
    """The cores' worth of CPU time other programs took on `cpus` lately.

    `read_stat`, `own_seconds`, `clock`: for tests (the /proc/stat text, this process's CPU seconds, seconds)."""

    def __init__(self, cpus: set[int] | None = None, window_s: float = 0.1, read_stat=None, own_seconds=None,
                 clock=time.monotonic) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        self.cpus = cpus if cpus is not None else usable_cpus()
        self.window_s = window_s
        self.read_stat = read_stat or PROC_STAT.read_text
        self.own_seconds = own_seconds or _own_cpu_seconds
        self.clock = clock
        self.tick_s = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01
        self.lock = threading.Lock()
        self.last = self._sample()
        self.busy = 0.0
        self._stop = threading.Event()

    @staticmethod
    def available(cpus: set[int] | None = None) -> bool:
        """Whether /proc/stat can be read and has a line for every CPU in `cpus` (default: this process's)."""
        try:
            present = busy_ticks(PROC_STAT.read_text())
        except (OSError, ValueError):
            return False
        return bool(present) and (cpus if cpus is not None else usable_cpus()) <= present.keys()

    def _sample(self) -> tuple[float, dict[int, int], float]:
        ticks = {cpu: busy for cpu, busy in busy_ticks(self.read_stat()).items() if cpu in self.cpus}
        return self.clock(), ticks, self.own_seconds()

    def cores_busy(self) -> float:
        """Cores' worth (0.0 .. len(cpus)) of CPU time other programs used over the window since the last sample,
        resampled when that is at least `window_s` old; in between, the last value (a file read at most every
        `window_s` seconds). Without `keep_fresh`, a window as long as the engine sat idle averages over all of
        it. Raises OSError or ValueError when /proc/stat cannot be read or parsed."""
        with self.lock:
            if self.clock() - self.last[0] >= self.window_s:
                sample = self._sample()
                # CPUs present in both samples only: one taken offline or back online between them would count its
                # whole time since boot
                common = sample[1].keys() & self.last[1].keys()
                ticks = sum(sample[1][cpu] - self.last[1][cpu] for cpu in common)
                others = ticks * self.tick_s - (sample[2] - self.last[2])
                self.busy = max(0.0, others / (sample[0] - self.last[0]))
                self.last = sample
            return self.busy

    def keep_fresh(self, period_s: float = 0.25) -> None:
        """Sample every `period_s` on a daemon thread until `stop()`, so that the window a pass is decided on is
        never longer than that, even after the engine sat idle (a build started just before a request would
        otherwise average away over the quiet minute before it). A read that fails stops the thread; the next
        `cores_busy` raises for the caller to handle."""
        def run() -> None:
            while not self._stop.wait(period_s):
                try:
                    self.cores_busy()
                except (OSError, ValueError):
                    return

        threading.Thread(target=run, name="specd-cpu-load", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
