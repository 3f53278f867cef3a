"""The daemon process: run it in the foreground (`serve`), start it detached, stop it, ask how it is.

`serve` is the only path that imports the engine (torch) and aiohttp; start/stop/status stay light so
the CLI and the language server start fast.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from specd.daemon import __version__
from .log_file import MAX_LOG_BYTES, older, rotate_before_start, rotate_while_running
from .state import (LOCK_FD_ENV, DaemonLock, live_state, lock_is_held, process_start, read_state, read_token,
                    remove_state, same_process_alive, write_private, write_state)
from specd.daemon.config.paths import Paths, ensure_dir
from specd.daemon.config.settings import (SPAWN_KEY_ENV, Settings, is_loopback_host, settings_record,
                                          without_flag_key)

log = logging.getLogger("specd.process")
progress_log = logging.getLogger("specd.progress")

PROGRESS_MARK = " specd.progress: "  # how `start` picks progress lines out of the daemon's log
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
STOP_TIMEOUT_S = 30.0
KILL_WAIT_S = 10.0  # for the kernel to end a SIGKILLed process
STATE_CHECK_S = 2.0  # how often the daemon checks that its state and token files are still there

Progress = Callable[[str], None]


class DaemonError(RuntimeError):
    """The daemon could not be started or reached; the message says why and what to do."""


# ---- serve (the daemon itself) -------------------------------------------------------------------

def serve(settings: Settings, paths: Paths, flags: list[str] | None = None) -> int:
    """Run the daemon in this process until SIGTERM/SIGINT. Returns the exit code. `flags` (the
    command-line settings) go into the state file so that `specd restart` can give them again, and the settings in
    effect (config/settings.py: settings_record) so that `specd start` can tell which flags would change them."""
    ensure_dir(paths.state_dir, private=True)
    lock = DaemonLock(paths.lock_file)
    inherited = os.environ.pop(LOCK_FD_ENV, "")  # `specd start` took the lock for us (start_background)
    if not (inherited.isdigit() and lock.adopt(int(inherited))) and not lock.acquire(attempts=20):
        state = live_state(paths) or {}
        log.error("specd is already running%s", f" at {state['url']} (pid {state['pid']})" if state else "")
        return 1
    try:
        remove_state(paths)  # we hold the lock, so any state file is a dead daemon's
        return asyncio.run(_serve(settings, paths, flags or []))
    finally:
        remove_state(paths)
        lock.release()


def _engine_hooks(settings: Settings):
    from specd.daemon.engine import loop as engine_module  # heavy: torch
    from specd.daemon.models.loading import load_engine

    def load(progress: Progress):
        config = engine_module.EngineConfig(**settings.engine_kwargs())
        if settings.upstream:  # an upstream server does the model work (models/upstream.py)
            from specd.daemon.models.upstream import load_upstream_engine

            return load_upstream_engine(settings.upstream, config, progress=progress)
        return load_engine(config, progress=progress)

    return engine_module, load


async def _serve(settings: Settings, paths: Paths, flags: list[str]) -> int:
    from aiohttp import web

    from specd.daemon.service.metrics import Metrics
    from specd.daemon.service.scheduler import Scheduler
    from specd.daemon.api.app import create_app
    from specd.daemon.api.security import load_or_create_aws_keys, load_or_create_token

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    failure: list[str] = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)

    def load_failed(message: str) -> None:
        failure.append(message)
        loop.call_soon_threadsafe(stop.set)

    logging.getLogger("aiohttp.server").addFilter(_malformed_request_in_one_line)
    token = load_or_create_token(paths.token_file)
    progress_log.info("importing the engine (torch and transformers; the backend is chosen with the models)")
    engine_module, load = await loop.run_in_executor(None, _engine_hooks, settings)
    metrics = Metrics()
    scheduler = Scheduler(load, engine_module.CancelToken, metrics, queue_size=settings.queue_size,
                          request_timeout=settings.request_timeout, keep_alive=settings.keep_alive,
                          progress=progress_log.info, on_load_failed=load_failed)
    app = create_app(settings, scheduler, token=token, new_request=engine_module.GenerationRequest,
                     request_error=engine_module.RequestError, aws_keys=load_or_create_aws_keys(paths.aws_keys_file))
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        log.error("cannot listen on %s:%s: %s", settings.host, settings.port, listen_problem(e))
        return 1
    port = site._server.sockets[0].getsockname()[1]  # the real port when settings.port is 0
    if not is_loopback_host(settings.host):
        log.warning("listening beyond loopback on %s (the `host` setting); every request still needs the "
                    "token", settings.host)
    state = {"pid": os.getpid(), "url": f"http://{_url_host(settings.host)}:{port}", "host": settings.host,
             "port": port,
             "token_file": str(paths.token_file), "aws_keys_file": str(paths.aws_keys_file),
             "version": __version__, "started_at": time.time(),
             "flags": flags, "settings": settings_record(settings), "status": "loading"}
    write_state(paths, state)
    progress_log.info("listening on %s; loading the models", state["url"])
    scheduler.start()
    loaded = loop.run_in_executor(None, scheduler.wait_loaded)
    waiter = asyncio.ensure_future(stop.wait())
    await asyncio.wait({loaded, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if loaded.done() and not failure:
        state = {**state, "status": "ready"}
        write_state(paths, state)
        progress_log.info("ready at %s", state["url"])
    await _keep_files(paths, state, token, stop)
    log.info("stopping: cancelling queued and running requests")
    remove_state(paths)
    await loop.run_in_executor(None, scheduler.stop)
    await runner.cleanup()
    if failure:
        log.error("the models could not be loaded: %s", failure[0])
        return 1
    log.info("stopped")
    return 0


def _malformed_request_in_one_line(record: logging.LogRecord) -> bool:
    """aiohttp logs a request it cannot parse (no Host header in HTTP/1.1, a bad request line) with the
    parser's traceback, which a client could fill the log with; it has answered 400 already. One line instead."""
    from aiohttp.http_exceptions import HttpProcessingError

    error = record.exc_info[1] if record.exc_info else None
    if isinstance(error, HttpProcessingError):
        record.msg, record.args = "refused a malformed HTTP request (400): %s", (str(error.message).strip(),)
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
    return True


async def _keep_files(paths: Paths, state: dict, token: str, stop: asyncio.Event) -> None:
    """Until `stop`, write the state file again whenever it is gone or changed, and the token file whenever it is
    gone (a /tmp cleaner, a user's rm): start, status and stop find the daemon by the state file (without it a
    start would wait for a daemon that never says it is ready, and a stop would find nothing to stop), and every
    client reads the token it still checks from the token file. A token file the user changed is left alone
    (`specd restart` then takes the new token). A log grown beyond MAX_LOG_BYTES is rotated (log_file.py)."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=STATE_CHECK_S)
        except asyncio.TimeoutError:
            if read_state(paths) != state:
                log.warning("the state file %s was gone or changed; writing it again", paths.state_file)
                write_state(paths, state)
            if not paths.token_file.exists():
                log.warning("the token file %s was gone; writing it again", paths.token_file)
                write_private(paths.token_file, token + "\n")
            try:
                if rotate_while_running(paths.log_file):
                    log.info("the log grew beyond %d MiB; the earlier lines are in %s", MAX_LOG_BYTES >> 20,
                             older(paths.log_file))
            except OSError as e:
                log.warning("could not start a new log file %s: %s", paths.log_file, e)


def listen_problem(error: OSError) -> str:
    """Why a listening socket could not be opened, and what to change."""
    if error.errno == errno.EADDRINUSE:
        return f"{error.strerror}: another program uses the port; set `port` in settings.json or pass --port"
    if isinstance(error, socket.gaierror) or error.errno == errno.EADDRNOTAVAIL:
        return f"{error.strerror}: `host` names no address of this machine; fix `host` in settings.json or --host"
    return f"{error.strerror or error}: check `host` and `port` in settings.json"


def port_problem(host: str, port: int) -> str | None:
    """Why the daemon could not listen on host:port now (another program holds the port, the host is not this
    machine's), else None; with port 0 (any free port) only the host is tried."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp's listening socket
            probe.bind((host, port))
    except OSError as error:
        return f"cannot listen on {host}:{port}: {listen_problem(error)}"
    return None


def _url_host(host: str) -> str:
    """Where local clients should connect: a wildcard bind is reached through loopback, which is also
    a Host name the server accepts."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


# ---- start / stop / status (from another process) -------------------------------------------------

def start_background(paths: Paths, serve_args: list[str], progress: Progress) -> tuple[dict, bool]:
    """Start `specd serve` detached and wait until it answers. Returns (state, already_running).

    The lock decides who starts: this process takes it before it spawns the daemon and hands it down, so of two
    starts at the same moment (`specd start & specd start`, two editors' language servers) one spawns the daemon
    and the other finds the lock held. A start that finds it held waits for that daemon as for its own (the same
    progress lines; neither wait has a time limit) and returns it with already_running True, or raises
    DaemonError with the log's last lines if it exits before it is ready."""
    state = live_state(paths)
    if state is None:
        ensure_dir(paths.state_dir, private=True)
        lock = DaemonLock(paths.lock_file)
        # Retried: `specd status` and the stale-state check hold the lock for an instant.
        if lock.acquire(attempts=20):
            try:
                child, offset = _spawn(paths, serve_args, lock)
            finally:
                lock.release()  # the child's copy of the descriptor keeps the lock
            progress(f"starting specd (pid {child.pid}); log: {paths.log_file}")
            return _wait_ready(paths, child, progress, offset), False
    if state is None or state.get("status") != "ready":
        pid = f" (pid {state['pid']})" if state else ""
        progress(f"specd is already being started{pid}; waiting until it is ready; log: {paths.log_file}")
        state = _wait_ready(paths, None, progress, log_offset=_log_size(paths))
    return state, True


def _spawn(paths: Paths, serve_args: list[str], lock: DaemonLock) -> tuple[subprocess.Popen, int]:
    """`specd serve` detached, inheriting `lock`; returns it and where its lines begin in the log."""
    rotate_before_start(paths.log_file)
    offset = _log_size(paths)
    serve_args, key = without_flag_key(serve_args)  # an upstream key goes in the environment, not on `ps`
    env = {**os.environ, LOCK_FD_ENV: str(lock.fd), **({SPAWN_KEY_ENV: key} if key is not None else {})}
    with open(paths.log_file, "ab") as log_file:
        child = subprocess.Popen(
            [sys.executable, "-m", "specd.daemon.cli", "serve", *serve_args],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own session: closing the terminal does not hang it up
            close_fds=True, pass_fds=(lock.fd,), env=env,
        )
    return child, offset


def _wait_ready(paths: Paths, child: subprocess.Popen | None, progress: Progress, log_offset: int) -> dict:
    """Wait for our `child`, or with None for the daemon that holds the lock, until it answers ready."""
    started_at = log_offset  # where this start's lines begin in the log
    while True:
        log_offset = _relay_progress(paths.log_file, log_offset, progress)
        state = live_state(paths)
        if state is not None and state.get("status") == "ready" and _answers(state["url"]):
            return state
        if child is not None and child.poll() is not None:
            _relay_progress(paths.log_file, log_offset, progress)
            raise DaemonError(f"specd exited during start (code {child.returncode}); "
                              f"last lines it wrote to {paths.log_file}:\n{tail_log(paths.log_file, 15, started_at)}")
        # Another start's daemon: it holds the lock from before it writes its state until it has exited.
        if child is None and state is None and not lock_is_held(paths.lock_file):
            _relay_progress(paths.log_file, log_offset, progress)
            raise DaemonError(f"the daemon another start was bringing up exited before it was ready; "
                              f"last lines written to {paths.log_file} meanwhile:\n"
                              f"{tail_log(paths.log_file, 15, started_at)}")
        time.sleep(0.1)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as response:
            return json.load(response).get("status") == "ok"
    except (OSError, ValueError):
        return False


def _log_size(paths: Paths) -> int:
    try:
        return paths.log_file.stat().st_size
    except FileNotFoundError:
        return 0


def _relay_progress(log_file: Path, offset: int, progress: Progress) -> int:
    try:
        with open(log_file, "rb") as f:
            f.seek(offset)
            chunk = f.read()
    except FileNotFoundError:
        return offset
    complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits for the next poll
    for line in complete.decode("utf-8", "replace").splitlines():
        if PROGRESS_MARK in line:
            progress(line.split(PROGRESS_MARK, 1)[1])
        elif " ERROR " in line:
            progress(line)
    return offset + len(complete)


def tail_log(log_file: Path, lines: int, start: int = 0) -> str:
    """The last `lines` lines of `log_file` written after byte `start`."""
    try:
        with open(log_file, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(start, size - 256 * 1024))
            data = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return "\n".join(data.splitlines()[-lines:]) if lines > 0 else ""


def stop_daemon(paths: Paths, progress: Progress, timeout: float = STOP_TIMEOUT_S) -> dict | None:
    """SIGTERM the daemon and wait until that process has exited (SIGKILL after `timeout` seconds). Returns its
    state, or None if none ran. A daemon that another start brings up meanwhile (an editor's language server) is
    left running."""
    state = live_state(paths)
    if state is None:
        return None
    pid = state["pid"]
    started = process_start(pid)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    progress(f"stopping specd (pid {pid})")
    if not _exited(pid, started, timeout):
        progress(f"specd did not stop within {timeout:g}s; killing it")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if not _exited(pid, started, KILL_WAIT_S):
            raise DaemonError(f"specd (pid {pid}) did not exit {KILL_WAIT_S:g}s after SIGKILL (a process stuck in "
                              "the kernel, e.g. on a hung disk); check it with `ps`")
    live_state(paths)  # removes the state file if the daemon could not
    return state


def _exited(pid: int, started: str | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while same_process_alive(pid, started):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def daemon_status(paths: Paths) -> dict:
    """What `specd status` shows: the state file plus, when it answers, the daemon's own report; and where
    settings.json is (`settings_file`, whether or not it exists)."""
    state = live_state(paths)
    if state is None:
        return {"running": False, "token_file": str(paths.token_file), "aws_keys_file": str(paths.aws_keys_file),
                "log_file": str(paths.log_file), "settings_file": str(paths.settings_file)}
    report = dict(state, running=True, log_file=str(paths.log_file), settings_file=str(paths.settings_file))
    report.pop("status", None)
    report["state"] = state.get("status")
    token = read_token(paths.token_file)
    request = urllib.request.Request(state["url"] + "/specd/v1/status",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            live = json.load(response)
    except (OSError, ValueError) as e:
        report["responding"] = False
        report["error"] = str(e)
        return report
    report["responding"] = True
    for key in ("state", "load_error", "device", "models", "uptime_s", "requests_served", "acceptance_rate",
                "queue_depth", "idle", "upstream"):
        report[key] = live.get(key)
    return report
