"""Other programs' CPU use, from /proc/stat less this process's own time: the signal for llama.cpp's pass threads."""

import os

import pytest

from specd.daemon.engine.runners.cpu_load import (OtherProgramsLoad, busy_ticks, usable_cpu_count,
                                                   usable_cpus)

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def stat_text(busy_per_cpu: dict[int, int], waiting: int = 0) -> str:
    """A /proc/stat whose cpuN lines hold `busy` ticks (split over user, system and steal), idle ticks and
    `waiting` iowait ticks."""
    total = sum(busy_per_cpu.values())
    lines = [f"cpu  {total} 0 0 {1000 * len(busy_per_cpu)} {waiting} 0 0 0 0 0"]
    for cpu, busy in sorted(busy_per_cpu.items()):
        user, system = busy // 2, busy // 4
        lines.append(f"cpu{cpu} {user} 0 {system} 1000 {waiting} 0 0 {busy - user - system} 0 0")
    lines += ["intr 12345 0 0", "procs_running 1", "procs_blocked 0"]
    return "\n".join(lines) + "\n"


class Machine:
    """A clock, per-CPU busy and iowait ticks and this process's CPU seconds, moved forward by the test."""

    def __init__(self, cpus=(0, 1)):
        self.now, self.own, self.waiting = 100.0, 5.0, 0
        self.busy = {cpu: 0 for cpu in cpus}

    def run(self, seconds, others: dict[int, float], own: float = 0.0, waiting: float = 0.0):
        """`others`: cores' worth of other programs per CPU; `own`: of this process (on CPU 0); `waiting`: cores'
        worth of idle time spent waiting for disk (not busy)."""
        self.now += seconds
        for cpu, share in others.items():
            self.busy[cpu] += round(share * seconds / TICK_S)
        self.busy[0] += round(own * seconds / TICK_S)
        self.own += own * seconds
        self.waiting += round(waiting * seconds / TICK_S)

    def load(self, cpus=None, window_s=0.1):
        return OtherProgramsLoad(set(self.busy) if cpus is None else cpus, window_s,
                                 lambda: stat_text(self.busy, self.waiting), lambda: self.own,
                                 lambda: self.now)


def test_other_programs_are_the_busy_time_less_this_process():
    machine = Machine()
    load = machine.load()
    machine.run(0.5, {1: 0.5}, own=1.0)  # this process kept CPU 0 busy, another program half of CPU 1
    assert load.cores_busy() == pytest.approx(0.5, abs=0.05)
    machine.run(0.5, {}, own=1.0, waiting=1.0)  # time waiting for the disk is idle time
    assert load.cores_busy() == pytest.approx(0.0, abs=0.05)
    machine.run(0.5, {0: 0.0, 1: 1.0})
    assert load.cores_busy() == pytest.approx(1.0, abs=0.05)


def test_only_the_cpus_this_process_may_run_on_count():
    machine = Machine(cpus=(0, 1, 2, 3))
    load = machine.load(cpus={0, 1})
    machine.run(0.5, {2: 1.0, 3: 1.0})  # a build pinned to the other two CPUs
    assert load.cores_busy() == pytest.approx(0.0, abs=0.05)


def test_it_resamples_only_after_a_window():
    machine = Machine()
    load = machine.load(window_s=0.1)
    machine.run(0.5, {1: 1.0})
    assert load.cores_busy() == pytest.approx(1.0, abs=0.05)
    machine.run(0.05, {1: 0.0})  # not a whole window later: the last value stands
    assert load.cores_busy() == pytest.approx(1.0, abs=0.05)
    machine.run(0.2, {1: 0.0})
    assert load.cores_busy() < 0.3  # the window since the last sample: mostly idle


def _wait_for(condition, timeout=5.0):
    import time as real_time

    deadline = real_time.monotonic() + timeout
    while not condition():
        assert real_time.monotonic() < deadline, "the sampling thread did not read /proc/stat"
        real_time.sleep(0.002)


def test_a_sampling_thread_keeps_the_window_short_after_an_idle_spell():
    """A build started 2 s before a request, after a minute of quiet, averages to 0.03 cores over the minute."""
    machine = Machine()
    reads = []
    read = lambda: (reads.append(1), stat_text(machine.busy))[1]  # noqa: E731
    fresh = OtherProgramsLoad({0, 1}, 0.1, read, lambda: machine.own, lambda: machine.now)
    stale = OtherProgramsLoad({0, 1}, 0.1, read, lambda: machine.own, lambda: machine.now)
    fresh.keep_fresh(period_s=0.005)
    try:
        machine.run(58.0, {})
        before = len(reads)
        _wait_for(lambda: len(reads) > before)  # the thread sampled the quiet minute
        machine.run(2.0, {1: 1.0})  # then a build started, and a request came
        assert fresh.cores_busy() == pytest.approx(1.0, abs=0.05)
        assert stale.cores_busy() < 0.05
    finally:
        fresh.stop()


def test_a_stopped_sampler_reads_no_more():
    import time as real_time

    reads = []
    load = OtherProgramsLoad({0}, 0.001, lambda: (reads.append(1), stat_text({0: 0}))[1], lambda: 0.0)
    load.keep_fresh(period_s=0.005)
    _wait_for(lambda: len(reads) > 2)
    load.stop()
    real_time.sleep(0.02)
    count = len(reads)
    real_time.sleep(0.05)
    assert len(reads) == count


def test_a_cpu_going_offline_or_back_is_not_counted_as_its_time_since_boot():
    machine = Machine(cpus=(0, 1, 2))
    load = machine.load()
    machine.busy[2] = 10**6
    machine.run(0.5, {})
    del machine.busy[2]  # taken offline
    assert load.cores_busy() == pytest.approx(0.0, abs=0.05)
    machine.busy[2] = 10**6  # back online
    machine.run(0.5, {})
    assert load.cores_busy() == pytest.approx(0.0, abs=0.05)


def test_ticks_this_process_spent_never_make_others_negative():
    machine = Machine()
    load = machine.load()
    machine.run(0.5, {}, own=0.0)
    machine.own += 0.3  # os.times counts time /proc/stat has not ticked yet
    assert load.cores_busy() == 0.0


def test_a_window_must_have_a_length():
    with pytest.raises(ValueError, match="window_s"):
        Machine().load(window_s=0.0)


@pytest.mark.parametrize("cpu_max, expected", [("200000 100000\n", 2), ("150000 100000\n", 2), ("max 100000\n", None),
                                               ("garbage\n", None), (None, None)])
def test_a_cgroup_cpu_quota_caps_the_usable_cpus(tmp_path, cpu_max, expected):
    path = tmp_path / "cpu.max"
    if cpu_max is not None:
        path.write_text(cpu_max)
    affinity = len(usable_cpus())
    assert usable_cpu_count(path) == (min(affinity, expected) if expected else affinity)


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="no /proc/stat here")
def test_the_real_proc_stat_has_every_usable_cpu():
    with open("/proc/stat") as stat:
        ticks = busy_ticks(stat.read())
    assert usable_cpus() <= ticks.keys() and sum(ticks.values()) > 0
    assert OtherProgramsLoad.available() and not OtherProgramsLoad.available({max(ticks) + 1})
