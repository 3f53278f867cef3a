"""`specd config zed` writes the FIM format of the tokenizer the daemon serves, not one guessed from the model's
name: the embedded SmolLM2 has no FIM tokens, and StarCoder markers sent to it come back as text."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from specd.daemon.cli import editor_config
from tests.lsp.fake_daemon import FakeDaemon


class StatusDaemon(FakeDaemon):
    """Answers /specd/v1/status as a daemon serving `verifier` whose tokenizer has `fim_template`."""

    def __init__(self, verifier: str, fim_template: str | None, loaded: bool = True) -> None:
        super().__init__()
        self.verifier, self.fim_template, self.loaded = verifier, fim_template, loaded

    async def _status(self, request: web.Request) -> web.Response:
        models = {"verifier": self.verifier, "fim_template": self.fim_template} if self.loaded else None
        return web.json_response({"state": "ready" if self.loaded else "loading", "models": models,
                                  "settings": {"verifier": self.verifier, "max_context": 2048}})


def zed_api(facts: editor_config.Facts) -> dict:
    return editor_config.zed_settings(facts)["edit_predictions"]["open_ai_compatible_api"]


async def served_facts(verifier: str, fim_template: str | None, loaded: bool = True) -> editor_config.Facts:
    daemon = await StatusDaemon(verifier, fim_template, loaded).start()
    try:
        return await asyncio.to_thread(editor_config.gather_facts)  # it asks the daemon over HTTP
    finally:
        await daemon.stop()


async def test_a_served_model_without_fim_tokens_gets_no_fim_format(specd_home, capsys):
    facts = await served_facts("smollm2-135m", None)
    assert (facts.fim_family, facts.fim_source) == (None, "served")
    assert zed_api(facts)["prompt_format"] == "infer"
    (note,) = editor_config.zed_fim_notes(facts)
    assert note.startswith("smollm2-135m has no fill-in-the-middle tokens (the daemon serves it with fim_template: "
                           'null), so no FIM format is written (prompt_format "infer")')


@pytest.mark.parametrize("verifier, fim_template, prompt_format", [
    ("my-finetune", "qwen2.5-coder", "qwen"),  # a name that says nothing: the tokenizer decides
    ("starcoder-renamed", "deepseek-coder", "deepseek_coder"),  # a name that misleads
])
async def test_the_served_tokenizer_beats_the_name(specd_home, verifier, fim_template, prompt_format):
    facts = await served_facts(verifier, fim_template)
    assert zed_api(facts)["prompt_format"] == prompt_format
    assert editor_config.zed_fim_notes(facts) == []


async def test_the_cli_prints_the_served_format_and_why(specd_home, capsys):
    daemon = await StatusDaemon("smollm2-135m", None).start()
    try:
        assert await asyncio.to_thread(editor_config.main, ["zed"]) == 0
    finally:
        await daemon.stop()
    out, err = capsys.readouterr()
    assert json.loads(out)["edit_predictions"]["open_ai_compatible_api"]["prompt_format"] == "infer"
    assert "smollm2-135m has no fill-in-the-middle tokens" in err


async def test_a_daemon_still_loading_leaves_the_choice_to_this_disk(specd_home):
    facts = await served_facts("smollm2-135m", None, loaded=False)
    assert (facts.fim_family, facts.fim_source) == (None, "unknown")
    assert zed_api(facts)["prompt_format"] == "infer"
    assert "Could not tell whether smollm2-135m has fill-in-the-middle tokens" in editor_config.zed_fim_notes(facts)[0]


def test_without_a_daemon_an_embedded_model_is_never_guessed_from_its_name(specd_home):
    facts = editor_config.gather_facts()
    assert (facts.model, facts.fim_family, facts.fim_source) == ("smollm2-135m", None, "unknown")
    assert zed_api(facts)["prompt_format"] == "infer"


def test_a_tokenizer_on_this_disk_decides(tiny_verifier, tmp_path):
    from tests.fixtures.tiny_models import write_tiny_llama

    assert editor_config.local_fim_family(str(tiny_verifier)) == ("starcoder", "tokenizer")
    plain = write_tiny_llama(tmp_path / "plain", fim=False, layers=1)
    assert editor_config.local_fim_family(str(plain)) == (None, "tokenizer")


def test_a_hub_id_not_downloaded_is_guessed_from_its_name_and_says_so(specd_home, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert editor_config.local_fim_family("nonesuch-org/Qwen2.5-Coder-7B") == ("qwen2.5-coder", "name")
    assert editor_config.local_fim_family("nonesuch-org/SmolLM2-1.7B") == (None, "unknown")
