"""Which backend runs the verifier: torch (transformers models, any device) or llama.cpp (GGUF files on CPU).

`backend: auto` picks llama.cpp for a GGUF verifier (the embedded defaults included) on the CPU when
llama-cpp-python is installed and nothing asks for torch (a `dtype`, a model drafter, layer skip, an
assistant); everything else runs on torch. `backend: llamacpp` insists, and says why when it cannot.
"""

from __future__ import annotations

from specd.daemon.config.settings import BACKENDS
from specd.daemon.engine.runners.llamacpp_runner import INSTALL_HINT, binding_available

LLAMACPP_STRATEGIES = ("auto", "ngram", "none")  # drafters that need no torch model of the verifier


class BackendError(ValueError):
    """The configured backend cannot run this configuration; the message says what to change."""


def choose_backend(config, is_gguf: bool, device_type: str, available: bool | None = None) -> str:
    """"torch" or "llamacpp" for an EngineConfig whose verifier is (`is_gguf`) a GGUF file, on the device
    torch would use (`device_type`: "cpu", "cuda", "mps"). `available` overrides the binding check (tests).
    Raises BackendError for `backend: llamacpp` with a non-GGUF verifier, a GPU device, a drafter that needs
    torch, or the binding missing (then the message says how to install it)."""
    backend = config.backend
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend == "torch":
        return "torch"
    available = binding_available() if available is None else available
    needs_torch = (config.draft_strategy not in LLAMACPP_STRATEGIES or bool(config.drafter)
                   or config.dtype != "auto")
    if backend == "auto":
        return "llamacpp" if is_gguf and device_type == "cpu" and available and not needs_torch else "torch"
    if not is_gguf:
        raise BackendError(f"backend 'llamacpp' runs GGUF files; verifier {config.verifier!r} is not one "
                           "(name an embedded default or a .gguf file, or use backend 'torch')")
    if config.device not in ("auto", "cpu"):
        raise BackendError(f"backend 'llamacpp' runs on the CPU here; device {config.device!r} needs backend 'torch'")
    if needs_torch:
        raise BackendError(
            f"backend 'llamacpp' drafts with n-gram lookup only (draft_strategy auto, ngram or none, no `drafter`, "
            f"dtype auto); draft_strategy {config.draft_strategy!r}, drafter {config.drafter!r}, dtype "
            f"{config.dtype!r} need backend 'torch'")
    if not available:
        raise BackendError(INSTALL_HINT)
    return "llamacpp"
