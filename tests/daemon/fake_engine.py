"""A stand-in engine with the contract's API, for scheduler and HTTP behaviour that must be driven
step by step (a request held in flight, a full queue, a deadline). No torch: these tests stay fast.
"""

from __future__ import annotations

import threading

from specd.daemon.engine.requests import CancelToken, GenerationRequest, GenerationResult, PromptTooLong, Stats

# text, then a tool call as Qwen/Hermes templates teach (api/tool_calls.py), then a newline
SCRIPTED_CALL = 'Let me check. <tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>\n'


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
        self.requests: list[GenerationRequest] = []  # every request generated, in order
        self.script: str | None = None  # when set, the text every generation writes, in 7-character pieces
        self.templated: list[tuple[list[dict], list[dict] | None]] = []  # (messages, tools) of each chat prompt
        FakeEngine.alive += 1
        FakeEngine.most_alive = max(FakeEngine.most_alive, FakeEngine.alive)

    def generate(self, request: GenerationRequest, cancel: CancelToken, on_text=None) -> GenerationResult:
        if request.prompt == "too long":
            raise PromptTooLong(9999, 64)
        self.requests.append(request)
        pieces: list[str] = []
        reason = "length"
        script = [self.script[i:i + 7] for i in range(0, len(self.script), 7)] if self.script is not None else None
        for i in range(request.max_tokens if script is None else min(request.max_tokens, len(script))):
            if cancel.cancelled:
                reason = "cancelled"
                break
            pieces.append(f"t{i} " if script is None else script[i])
            if on_text is not None:
                on_text(pieces[-1])
            self.entered.set()
            while self.hold and not self.release.is_set() and not cancel.cancelled:
                self.release.wait(0.005)
        if script is not None and reason != "cancelled" and len(pieces) == len(script):
            reason = "stop"  # the scripted answer is complete
        self.finished.append(reason)
        stats = Stats(prompt_tokens=len(request.prompt.split()), completion_tokens=len(pieces),
                          drafted_tokens=2 * len(pieces), accepted_tokens=len(pieces),
                          verifier_passes=len(pieces))
        return GenerationResult("".join(pieces), list(range(len(pieces))), reason, stats)

    def info(self) -> dict:
        return {"verifier": "fake-model", "drafter": None, "draft_strategy": "none", "device": "cpu",
                "dtype": "float32", "memory_bytes": 0, "max_context": 64}

    def apply_chat_template(self, messages: list[dict], tools: list[dict] | None = None,
                            continue_final: bool = False) -> str:
        self.templated.append((messages, tools))
        transcript = "\n".join(f"{m['role']}: {m['content']}" for m in messages)
        return transcript if continue_final else transcript + "\nassistant:"

    def close(self) -> None:
        FakeEngine.alive -= 1
