"""`backend: auto | torch | llamacpp`: which runner serves a configuration, and what an impossible one says."""

import pytest

from specd.daemon.config.settings import SettingsError, load_settings
from specd.daemon.engine.loop import EngineConfig
from specd.daemon.engine.runners.llamacpp_runner import INSTALL_HINT
from specd.daemon.models import backend as backend_module
from specd.daemon.models.backend import BackendError, choose_backend
from specd.daemon.models.loading import load_engine


@pytest.mark.parametrize("gguf, device, available, expected", [
    (True, "cpu", True, "llamacpp"),     # the embedded defaults on a CPU with the binding
    (True, "cpu", False, "torch"),       # ... without it
    (True, "cuda", True, "torch"),       # a GPU keeps torch
    (True, "mps", True, "torch"),
    (False, "cpu", True, "torch"),       # HF models keep torch
])
def test_auto(gguf, device, available, expected):
    assert choose_backend(EngineConfig(), gguf, device, available) == expected


@pytest.mark.parametrize("overrides", [dict(draft_strategy="layer_skip"), dict(drafter="some/model"),
                                       dict(draft_strategy="model", drafter="x/y"), dict(dtype="bfloat16")])
def test_auto_keeps_torch_for_what_only_torch_runs(overrides):
    assert choose_backend(EngineConfig(**overrides), True, "cpu", True) == "torch"


def test_torch_is_always_torch():
    assert choose_backend(EngineConfig(backend="torch"), True, "cpu", True) == "torch"


def test_llamacpp_without_the_binding_says_how_to_install_it():
    with pytest.raises(BackendError) as error:
        choose_backend(EngineConfig(backend="llamacpp"), True, "cpu", False)
    assert str(error.value) == INSTALL_HINT
    assert "pip install 'specd[llamacpp]'" in INSTALL_HINT and "-DGGML_LLAMAFILE=OFF" in INSTALL_HINT


@pytest.mark.parametrize("overrides, gguf, words", [
    (dict(), False, "runs GGUF files"),
    (dict(device="cuda"), True, "needs backend 'torch'"),
    (dict(draft_strategy="layer_skip"), True, "n-gram lookup only"),
    (dict(drafter="Qwen/Qwen2.5-Coder-0.5B"), True, "n-gram lookup only"),
])
def test_llamacpp_refuses_what_it_cannot_run(overrides, gguf, words):
    with pytest.raises(BackendError, match=words):
        choose_backend(EngineConfig(backend="llamacpp", **overrides), gguf, "cpu", True)


def test_load_engine_with_the_binding_missing_fails_before_loading_anything(tmp_path, monkeypatch):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")  # never read: the backend is refused first
    monkeypatch.setattr(backend_module, "binding_available", lambda: False)
    with pytest.raises(BackendError, match="pip install 'specd\\[llamacpp\\]'"):
        load_engine(EngineConfig(verifier=str(gguf), backend="llamacpp"), progress=lambda message: None)


def test_the_setting_is_checked(tmp_path):
    settings = tmp_path / "settings.json"
    settings.write_text('{"backend": "llamacpp"}')
    assert load_settings(settings, env={}).engine_kwargs()["backend"] == "llamacpp"
    settings.write_text('{"backend": "vulkan"}')
    with pytest.raises(SettingsError, match="backend"):
        load_settings(settings, env={})


def test_specd_status_names_the_backend():
    from specd.daemon.cli.main import _describe

    models = {"verifier": "smollm2-135m", "backend": "llamacpp", "dtype": "Q4_1", "drafter": "ngram",
              "draft_strategy": "auto", "memory_bytes": 2**20}
    report = {"running": True, "url": "http://127.0.0.1:7411", "pid": 1, "responding": True, "state": "ready",
              "token_file": "t", "log_file": "l", "models": models}
    assert "verifier: smollm2-135m on llamacpp (Q4_1), drafter: ngram (auto)" in _describe(report)
