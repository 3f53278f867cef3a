"""Other programs' CPU use, from /proc/stat less this process's own time: the signal for llama.cpp's pass threads."""

import os

import pytest

from specd.daemon.engine.runners.cpu_load import OtherProgramsLoad

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def stat_text(busy_per_cpu: dict[int, int], idle: int = 1000) -> str:
    """A /proc/stat whose cpuN lines hold `busy` ticks, split over user, system and steal, and `idle` idle ticks."""
    total = sum(busy_per_cpu.values())
    lines = [f"cpu  {total} 0 0 {idle * len(busy_per_cpu)} 0 0 0 0 0 0"]
    for cpu, busy in sorted(busy_per_cpu.items()):
        user, system = busy // 2, busy // 4
        lines.append(f"cpu{cpu} {user} 0 {system} {idle} 7 0 0 {busy - user - system} 0 0")
    lines.append("intr 12345 0 0")
    return "\n".join(lines) + "\n"


class Machine:
    """A clock, per-CPU busy ticks and this process's CPU seconds, moved forward by the test."""

    def __init__(self, cpus=(0, 1)):
        self.now, self.own = 100.0, 5.0
        self.busy = {cpu: 0 for cpu in cpus}

    def run(self, seconds, others: dict[int, float], own: float = 0.0):
        """`others`: cores' worth of other programs per CPU; `own`: cores' worth of this process (on CPU 0)."""
        self.now += seconds
        for cpu, share in others.items():
            self.busy[cpu] += round(share * seconds / TICK_S)
        self.busy[0] += round(own * seconds / TICK_S)
        self.own += own * seconds

    def load(self, cpus=None, window_s=0.1):
        return OtherProgramsLoad(set(self.busy) if cpus is None else cpus, window_s, lambda: stat_text(self.busy),
                                 lambda: self.own, lambda: self.now)


def test_other_programs_are_the_busy_time_less_this_process():
    machine = Machine()
    load = machine.load()
    machine.run(1.0, {1: 0.5}, own=1.0)  # this process kept CPU 0 busy, another program half of CPU 1
    assert load.cores_busy() == pytest.approx(0.5, abs=0.02)
    machine.run(1.0, {}, own=1.0)
    assert load.cores_busy() == pytest.approx(0.0, abs=0.02)
    machine.run(1.0, {0: 0.0, 1: 1.0})
    assert load.cores_busy() == pytest.approx(1.0, abs=0.02)


def test_only_the_cpus_this_process_may_run_on_count():
    machine = Machine(cpus=(0, 1, 2, 3))
    load = machine.load(cpus={0, 1})
    machine.run(1.0, {2: 1.0, 3: 1.0})  # a build pinned to the other two CPUs
    assert load.cores_busy() == pytest.approx(0.0, abs=0.02)


def test_it_resamples_only_after_a_window():
    machine = Machine()
    load = machine.load(window_s=0.1)
    machine.run(0.5, {1: 1.0})
    assert load.cores_busy() == pytest.approx(1.0, abs=0.05)
    machine.run(0.05, {1: 0.0})  # not a whole window later: the last value stands
    assert load.cores_busy() == pytest.approx(1.0, abs=0.05)
    machine.run(0.2, {1: 0.0})
    assert load.cores_busy() < 0.3  # the window since the last sample: mostly idle


def test_ticks_this_process_spent_never_make_others_negative():
    machine = Machine()
    load = machine.load()
    machine.run(1.0, {}, own=0.0)
    machine.own += 0.3  # os.times counts time /proc/stat has not ticked yet
    assert load.cores_busy() == 0.0


@pytest.mark.skipif(not OtherProgramsLoad.available(), reason="no /proc/stat here")
def test_the_real_proc_stat_parses():
    load = OtherProgramsLoad(window_s=0.0)
    assert load.cores_busy() >= 0.0
