"""`specd start` on a running daemon: which settings (settings.json, SPECD_*, flags) differ from those it has in
effect (tests/daemon/test_start_settings.py runs the command)."""

from __future__ import annotations

import json

from specd.daemon.cli.main import _changes
from specd.daemon.config.settings import Settings, load_settings, settings_record

UPSTREAM = '{"url": "http://gpu:8000", "key": "secret-1"}'


def running(settings: Settings, **live) -> dict:
    """daemon_status's report: the state file's settings (as JSON) and what the daemon resolved."""
    return {"settings": json.loads(json.dumps(settings_record(settings))), **live}


def changes(tmp_path, report: dict, **flags: str) -> list[str]:
    return _changes(load_settings(tmp_path / "settings.json", env={}, flags=flags), report)


def test_only_values_that_differ_from_those_in_effect_are_named(tmp_path):
    report = running(Settings(port=0), port=40123, models={"device": "cpu", "dtype": "float32", "backend": "torch"})
    same = dict(cache_slots="4", keep_alive="-1", device="cpu", dtype="float32", backend="torch", port="40123")
    assert changes(tmp_path, report, **same) == []
    assert changes(tmp_path, report, port="0") == []
    assert changes(tmp_path, report, cache_slots="8", verifier="gemma3-270m", allowed_hosts="a,b", port="0") == [
        "verifier smollm2-135m -> gemma3-270m", "cache_slots 4 -> 8", 'allowed_hosts [] -> ["a", "b"]']


def test_every_setting_counts_not_only_the_flags_given(tmp_path):
    (tmp_path / "settings.json").write_text('{"max_draft_tokens": 6}')
    requested = load_settings(tmp_path / "settings.json", env={"SPECD_THREADS": "1"}, flags={})
    sources = {"max_draft_tokens": "settings.json", "threads": "SPECD_THREADS"}
    assert _changes(requested, running(Settings()), sources) == [
        "max_draft_tokens 8 -> 6 (settings.json)", "threads 0 -> 1 (SPECD_THREADS)"]


def test_the_upstream_key_is_compared_by_a_fingerprint_and_never_shown(tmp_path):
    report = running(load_settings(tmp_path / "settings.json", env={}, flags={"upstream": UPSTREAM}))
    assert "secret" not in json.dumps(report)
    assert changes(tmp_path, report, upstream=UPSTREAM) == []
    [changed] = changes(tmp_path, report, upstream=UPSTREAM.replace("secret-1", "secret-2"))
    assert changed.startswith("upstream ") and "secret" not in changed


def test_a_daemon_that_does_not_tell_its_settings_gets_no_advice(tmp_path):
    assert changes(tmp_path, {"flags": []}, cache_slots="8") == []
