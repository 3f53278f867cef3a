from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from specd.daemon.service.metrics import Metrics
from specd.daemon.engine.requests import CancelToken, GenerationRequest, RequestError
from specd.daemon.service.scheduler import Scheduler
from specd.daemon.config.settings import Settings

from .fake_engine import FakeEngine

READY_WAIT_S = 300  # a bound against hanging forever, not a speed requirement
TOKEN = "test-token-0123456789"


# ---- the fake-engine app, in process ---------------------------------------------------------------

@dataclass
class FakeDaemon:
    url: str
    token: str
    scheduler: Scheduler
    engines: list[FakeEngine]

    @property
    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def engine(self) -> FakeEngine:
        return self.engines[-1]


@contextlib.asynccontextmanager
async def serve_app(settings: Settings, scheduler: Scheduler, token: str = TOKEN, aws_keys=None):
    """The daemon's HTTP app over `scheduler` on a free loopback port, the scheduler started and its engine loaded;
    yields the base URL. Stops the scheduler and the app on exit."""
    from aiohttp import web

    from specd.daemon.api.app import create_app

    app = create_app(settings, scheduler, token=token, new_request=GenerationRequest, request_error=RequestError,
                     aws_keys=aws_keys)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    scheduler.start()
    await asyncio.get_running_loop().run_in_executor(None, scheduler.wait_loaded)
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    finally:
        await asyncio.get_running_loop().run_in_executor(None, scheduler.stop)
        await runner.cleanup()


@contextlib.asynccontextmanager
async def fake_daemon(hold: bool = False, load_error: Exception | None = None, aws_keys=None, **overrides):
    settings = replace(Settings(verifier="fake-model"), **overrides)
    engines: list[FakeEngine] = []

    def load(progress):
        if load_error is not None:
            raise load_error
        engines.append(FakeEngine(hold=hold))
        return engines[-1]

    scheduler = Scheduler(load, CancelToken, Metrics(), queue_size=settings.queue_size,
                          request_timeout=settings.request_timeout, keep_alive=settings.keep_alive)
    async with serve_app(settings, scheduler, aws_keys=aws_keys) as url:
        try:
            yield FakeDaemon(url, TOKEN, scheduler, engines)
        finally:
            for engine in engines:
                engine.release.set()


@pytest.fixture(scope="session")
def chat_model(tmp_path_factory) -> Path:
    """A tiny random-weight model whose chat template renders tools (tests/fixtures/tiny_models.py)."""
    from tests.fixtures.tiny_models import write_tiny_chat_model

    return write_tiny_chat_model(tmp_path_factory.mktemp("chat-model") / "tiny-chat")


@pytest.fixture(scope="session")
def chat_daemon(chat_model):
    """`chat_model` served in-process with n-gram drafting (served_engine.serve); shared by the tool-call tests."""
    from specd.daemon.engine.loop import EngineConfig
    from specd.daemon.models.loading import load_engine

    from .served_engine import serve

    config = EngineConfig(verifier=str(chat_model), draft_strategy="ngram")
    with serve(lambda: load_engine(config, progress=lambda m: None), verifier=str(chat_model)) as served:
        yield served


@pytest.fixture(scope="session")
def scripted_daemon():
    """(served, engine): a FakeEngine whose every answer is SCRIPTED_CALL (text, then a call in the Qwen/Hermes
    form), served in-process; the tool-call tests of every door read its calls and `engine.templated`."""
    from .fake_engine import SCRIPTED_CALL, FakeEngine
    from .served_engine import serve

    engine = FakeEngine()
    engine.script = SCRIPTED_CALL
    with serve(lambda: engine) as served:
        yield served, engine


# ---- the real daemon, as a subprocess --------------------------------------------------------------

@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory) -> tuple[Path, Path]:
    from tests.fixtures.tiny_models import write_tiny_pair

    return write_tiny_pair(tmp_path_factory.mktemp("tiny-models"))


_HOMES: list[tuple[Path, int | None]] = []  # each SPECD_HOME handed out (specd_env), and its daemon's pid then


def _daemon_pid(home: Path) -> int | None:
    from specd.daemon.config.paths import Paths
    from specd.daemon.process.state import live_state

    state = live_state(Paths(home / "config", home / "cache", home / "state"))
    return state.get("pid") if state else None


@pytest.fixture(autouse=True)
def _no_daemon_left_behind():
    """Stop a daemon that a test started in a home it asked specd_env for, and left running because it failed
    halfway (two such daemons were found hours after a run). A daemon that ran there before (a wider fixture's,
    which a test may ask specd_env about again) is left alone."""
    first = len(_HOMES)
    yield
    for home, before in _HOMES[first:]:
        pid = _daemon_pid(home)
        if pid is not None and pid != before and all(pid != earlier for _, earlier in _HOMES[:first]):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    del _HOMES[first:]


def specd_env(home: Path, **extra: str) -> dict:
    _HOMES.append((Path(home), _daemon_pid(Path(home))))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPECD_")}
    # One torch thread: on a 2-core test machine shared with the test process, two threads make each
    # tiny forward pass about ten times slower (thread hand-off costs more than the matmuls).
    env.update(SPECD_HOME=str(home), OMP_NUM_THREADS="1", **extra)
    return env


def unloadable_model(folder: Path, name: str = "no-such-model") -> str:
    """A `.gguf` file that is no GGUF: the CLI, which checks only that a model file exists, lets a start go on,
    and the daemon fails within a second of loading it, naming the file."""
    path = folder / f"{name}.gguf"
    path.write_text("not a model")
    return str(path)


def run_cli(env: dict, *args: str, timeout: float = READY_WAIT_S) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "specd.daemon.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def process_gone(pid: int) -> bool:
    """True when the pid does not exist or is a zombie (exited, not yet reaped by its new parent)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    state = next(line for line in status.splitlines() if line.startswith("State:"))
    return "Z" in state.split()[1]


def rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


@dataclass
class RealDaemon:
    home: Path
    process: subprocess.Popen
    url: str
    token: str
    pid: int
    log_path: Path

    @property
    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_real_daemon(home: Path, env: dict, args: list[str]) -> RealDaemon:
    """`specd serve` in the foreground of a child process; returns once its state file says ready."""
    log_path = home / "serve.log"
    home.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "specd.daemon.cli", "serve", *args], env=env,
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    state_file = home / "state" / "daemon.json"
    give_up = time.monotonic() + READY_WAIT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"specd serve exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            state = json.loads(state_file.read_text())
        except (FileNotFoundError, ValueError):
            state = {}
        if state.get("status") == "ready":
            break
        if time.monotonic() > give_up:
            process.kill()
            raise RuntimeError(f"specd serve was not ready after {READY_WAIT_S}s:\n{log_path.read_text()}")
        time.sleep(0.1)
    token = Path(state["token_file"]).read_text().strip()
    return RealDaemon(home, process, state["url"], token, state["pid"], log_path)


def stop_real_daemon(daemon: RealDaemon) -> None:
    if daemon.process.poll() is None:
        daemon.process.terminate()
        try:
            daemon.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.process.kill()
            daemon.process.wait()
