"""A stand-in engine with the contract's API, for scheduler and HTTP behaviour that must be driven
step by step (a request held in flight, a full queue, a deadline). No torch: these tests stay fast.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field


class FakeRequestError(ValueError):
    pass


class FakeCancelToken:
    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass
class FakeRequest:
    prompt: str = ""
    suffix: str | None = None
    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    mode: str | None = None
    draft_tokens: int | None = None
    cache_key: str | None = None
    fit_context: bool = False


@dataclass
class FakeStats:
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    drafted_tokens: int = 0
    accepted_tokens: int = 0
    verifier_passes: int = 0
    queue_s: float = 0.0
    prefill_s: float = 0.0
    draft_s: float = 0.0
    verify_s: float = 0.0
    total_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FakeResult:
    text: str
    token_ids: list[int]
    finish_reason: str
    stats: FakeStats


class FakeEngine:
    """Emits "t0 t1 ..." one piece per step. While `hold` is set it stops after the first piece and
    waits for `release` (or for cancellation)."""

    alive = 0  # engines loaded and not closed, across instances
    most_alive = 0

    def __init__(self, hold: bool = False) -> None:
        self.hold = hold
        self.release = threading.Event()
        self.entered = threading.Event()  # set when a generation has produced its first piece
        self.finished: list[str] = []  # finish_reason of each generation, in order
        FakeEngine.alive += 1
        FakeEngine.most_alive = max(FakeEngine.most_alive, FakeEngine.alive)

    def generate(self, request: FakeRequest, cancel: FakeCancelToken, on_text=None) -> FakeResult:
        if request.prompt == "too long":
            raise FakeRequestError("the prompt is 9999 tokens; the context window is 64 tokens")
        pieces: list[str] = []
        reason = "length"
        for i in range(request.max_tokens):
            if cancel.cancelled:
                reason = "cancelled"
                break
            pieces.append(f"t{i} ")
            if on_text is not None:
                on_text(pieces[-1])
            self.entered.set()
            while self.hold and not self.release.is_set() and not cancel.cancelled:
                self.release.wait(0.005)
        self.finished.append(reason)
        stats = FakeStats(prompt_tokens=len(request.prompt.split()), completion_tokens=len(pieces),
                          drafted_tokens=2 * len(pieces), accepted_tokens=len(pieces),
                          verifier_passes=len(pieces))
        return FakeResult("".join(pieces), list(range(len(pieces))), reason, stats)

    def info(self) -> dict:
        return {"verifier": "fake-model", "drafter": None, "draft_strategy": "none", "device": "cpu",
                "dtype": "float32", "memory_bytes": 0, "max_context": 64}

    def apply_chat_template(self, messages: list[dict]) -> str:
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"

    def close(self) -> None:
        FakeEngine.alive -= 1
