"""HTTP client for the daemon's native completion route.

Requests are plain `async` aiohttp calls, so cancelling the awaiting task aborts the HTTP request: the
connection is closed and the daemon cancels the job in its engine loop. The daemon is found through its
state file; when none is running it is started the way `specd start` does, and when it restarted (new
port or token) it is found again on the next request. After a failed start it is not started again until
settings.json changes or a back-off delay passes; it is still looked for on every request.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Callable

import aiohttp

from . import locate
from .locate import Endpoint


COMPLETE_ROUTE = "/specd/v1/complete"
STATUS_ROUTE = "/specd/v1/status"

# After a failed start, the next one waits this long, doubling per failure up to the cap. A start that fails costs
# seconds of CPU (the daemon imports torch before it finds the model missing) and editors ask on every keystroke.
# Most failures (a bad setting, a missing model) need the user, and a fix shows as a settings.json change, which
# is retried at once; 30 s lets the others (a download, a port that frees up) recover soon, and the 4 min cap keeps
# a machine left broken at one wasted start every few minutes.
START_RETRY_S = 30.0
START_RETRY_MAX_S = 240.0
ANSWER_MARGIN_S = 5.0  # past the daemon's request_timeout, by which it has answered (as `specd complete` waits)


class DaemonError(Exception):
    """The daemon could not answer; the message says why (never contains document text)."""


class DaemonStartError(DaemonError):
    """No daemon was running and starting one failed (a bad setting, a model that cannot load): the user has to
    act, so the language server shows it rather than only logging it."""


@dataclass(frozen=True)
class _StartFailure:
    reason: str
    at: float  # clock time of the failure
    delay: float  # seconds until starting is tried again
    settings: object  # settings.json's stamp when the start began


class DaemonClient:
    """The language server's client of the daemon's native routes (POST /specd/v1/complete, GET /specd/v1/status), with
    the daemon's Bearer token: finds the daemon (`find`), starts it when none runs (`start`, on a thread, shared by
    concurrent calls, held back after a failed start; see the module docstring), and finds it again once when it refuses
    the token or stops answering. `complete` and `status` return the JSON object answered; they raise DaemonStartError
    when starting the daemon failed, DaemonError when it cannot answer (unreachable, an HTTP error, a body that is not a
    JSON object, no answer within `timeout_s` seconds for the whole request). `report` gets log lines."""

    def __init__(
        self,
        find: Callable[[], Endpoint | None] = locate.find,
        start: Callable[[], Endpoint] = locate.start,
        timeout_s: float = 30.0,
        report: Callable[[str], None] = lambda message: None,
        alert: Callable[[str], None] = lambda message: None,
        settings_stamp: Callable[[], object] = locate.settings_stamp,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._find = find
        self._start = start
        self.report = report
        self.alert = alert  # what the user must act on: a failed daemon start, once until the daemon answers
        self._alerted = False
        self._settings_stamp = settings_stamp
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._closer: asyncio.Task | None = None
        self._endpoint: Endpoint | None = None
        self._starting: asyncio.Future | None = None
        self._start_stamp: object = None  # settings.json's stamp when the running start began
        self._failure: _StartFailure | None = None  # the last start's failure, until a daemon is found

    async def complete(self, payload: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", COMPLETE_ROUTE, payload)

    async def status(self) -> dict[str, Any]:
        return await self._call("GET", STATUS_ROUTE, None)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
            if self._closer is None or self._closer.done():  # one per event loop
                self._closer = asyncio.ensure_future(self._close_when_the_loop_ends())
        return self._session

    async def _close_when_the_loop_ends(self) -> None:
        """Waits until cancelled, then closes the session. `specd lsp` ends without awaiting anything of ours
        (`exit` raises SystemExit inside the loop, the end of stdin returns from pygls's read loop); asyncio.run
        then cancels the tasks left while its loop still runs, and a session left open would make aiohttp warn
        "Unclosed client session"."""
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            await self.close()

    async def _call(self, method: str, route: str, payload: dict | None) -> dict[str, Any]:
        endpoint = await self._connect()
        try:
            answer = await self._send(endpoint, method, route, payload)
        except _Stale:
            # The daemon we knew is gone or has a new token: find (or start) it once more.
            self._endpoint = None
            try:
                answer = await self._send(await self._connect(), method, route, payload)
            except _Stale as exc:
                self._endpoint = None
                raise DaemonError(f"the daemon is not reachable: {exc}") from None
        self._alerted = False
        return answer

    async def _connect(self) -> Endpoint:
        if self._endpoint is None:
            self._endpoint = await self._locate_or_start()
        return self._endpoint

    async def _locate_or_start(self) -> Endpoint:
        if self._starting is None:
            endpoint = self._find()  # cheap: a state file and a lock check; also finds one started by hand
            if endpoint is not None:
                self._failure = None
                return endpoint
            self._hold_back()
            self.report("specd: no daemon is running; starting one")
            self._start_stamp = self._settings_stamp()
            # Shared by concurrent requests, and shielded: a cancelled keystroke must not abort a start.
            self._starting = asyncio.ensure_future(asyncio.to_thread(self._start_daemon))
            self._starting.add_done_callback(self._started)
        return await asyncio.shield(self._starting)

    def _hold_back(self) -> None:
        """Raise DaemonError (not DaemonStartError: the user was shown it already) with the last start's reason
        while that start failed recently and settings.json has not changed since it began."""
        failure = self._failure
        if failure is None or self._settings_stamp() != failure.settings:
            return
        now = self._clock()
        if now < failure.at + failure.delay:
            reason = (failure.reason.strip().splitlines() or [""])[-1]  # the error itself; the log lines were logged
            raise DaemonError(f"the daemon could not start {now - failure.at:.0f} s ago; it is started again when "
                              f"settings.json changes or in {failure.at + failure.delay - now:.0f} s: {reason}")

    def _started(self, future: asyncio.Future) -> None:
        self._starting = None
        if future.cancelled():
            return
        if future.exception() is None:
            self._failure = None
            self.report(f"specd: daemon started at {future.result().url}")
            return
        if not self._alerted:  # whichever request started it (a completion, the editor's status poll)
            self._alerted = True
            self.alert(_headline(str(future.exception())))
        previous = self._failure  # the delay doubles while the settings stay as they were
        delay = START_RETRY_S if previous is None or previous.settings != self._start_stamp \
            else min(previous.delay * 2, START_RETRY_MAX_S)
        self._failure = _StartFailure(str(future.exception()), self._clock(), delay, self._start_stamp)

    def _start_daemon(self) -> Endpoint:
        try:
            return self._start()
        except Exception as exc:
            raise DaemonStartError(f"could not start the daemon: {exc}") from None

    def _wait_s(self, endpoint: Endpoint) -> float:
        """How long to wait for an answer: the client's timeout, or longer where the daemon's request_timeout is,
        plus ANSWER_MARGIN_S, since by then the daemon answers (a cut answer or a 504): an answer it finished just
        after a shorter wait was thrown away."""
        if endpoint.request_timeout is None:
            return self._timeout.total
        return max(self._timeout.total, endpoint.request_timeout + ANSWER_MARGIN_S)

    async def _send(self, endpoint: Endpoint, method: str, route: str, payload: dict | None) -> dict:
        headers = {"Authorization": f"Bearer {endpoint.token}"}
        session = self._open_session()
        wait_s = self._wait_s(endpoint)
        try:
            async with session.request(method, endpoint.url + route, json=payload, headers=headers,
                                       timeout=aiohttp.ClientTimeout(total=wait_s)) as resp:
                body = await resp.read()
                if resp.status == 401:
                    raise _Stale(f"{endpoint.url} refused the token")
                return _decode(resp.status, body)
        except aiohttp.ClientConnectorError:
            raise _Stale(f"nothing answers at {endpoint.url}") from None
        except asyncio.TimeoutError:
            raise DaemonError(f"the daemon did not answer within {wait_s:g} s") from None
        except aiohttp.ClientError as exc:
            self._endpoint = None
            raise DaemonError(f"lost the connection to the daemon ({type(exc).__name__})") from None


class _Stale(Exception):
    """The endpoint no longer reaches the daemon (refused, or the token changed)."""


def _decode(status: int, body: bytes) -> dict:
    try:
        data = json.loads(body)
    except ValueError:
        raise DaemonError(f"the daemon answered HTTP {status} with a body that is not JSON") from None
    if status != 200:
        error = data.get("error") if isinstance(data, dict) else None  # another server's body may be anything
        message = error.get("message", "") if isinstance(error, dict) else str(error or "")
        raise DaemonError(f"the daemon refused the request: HTTP {status} {message}".rstrip())
    if not isinstance(data, dict):
        raise DaemonError("the daemon answered with JSON that is not an object")
    return data


_LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ [A-Z]+ [\w.]+: ")


def _headline(error: str) -> str:
    """A daemon start failure for a notification: its last line (the error itself, without the log line's time
    and logger), not the log lines before it, which the language server's log keeps."""
    lines = [line for line in error.splitlines() if line.strip()]
    if len(lines) == 1:
        return f"specd: {lines[0]}"
    return f"specd could not start its daemon: {_LOG_PREFIX.sub('', lines[-1])} (`specd logs` shows more)"
