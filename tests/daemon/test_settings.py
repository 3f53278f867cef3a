import pytest

from specd.daemon.config.settings import Settings, SettingsError, load_settings


def write(tmp_path, text: str):
    path = tmp_path / "settings.json"
    path.write_bytes(text.encode())
    return path


def test_defaults_without_a_file(tmp_path):
    assert load_settings(tmp_path / "missing.json", env={}) == Settings()


def test_precedence_flags_over_env_over_file_over_defaults(tmp_path):
    path = write(tmp_path, '{"port": 1000, "max_context": 1000, "queue_size": 1000}')
    env = {"SPECD_PORT": "2000", "SPECD_MAX_CONTEXT": "2000"}
    settings = load_settings(path, env=env, flags={"port": "3000", "draft_strategy": None})
    assert settings.port == 3000  # flag beats env and file
    assert settings.max_context == 2000  # env beats file
    assert settings.queue_size == 1000  # file beats default
    assert settings.cache_slots == Settings().cache_slots  # default
    assert settings.draft_strategy == "auto"  # a flag left unset does not count


def test_comments_and_trailing_commas_are_allowed(tmp_path):
    path = write(tmp_path, '{\n  // the model\n  "verifier": "x/y", /* block */\n  "keep_alive": 300,\n}\n')
    settings = load_settings(path, env={})
    assert (settings.verifier, settings.keep_alive) == ("x/y", 300)


def test_malformed_file_names_line_and_column_and_is_not_rewritten(tmp_path):
    text = '{\n  "port": 7411\n  "host": "127.0.0.1"\n}\n'
    path = write(tmp_path, text)
    before = path.stat()
    with pytest.raises(SettingsError, match=r"line 3 column 3"):
        load_settings(path, env={})
    assert path.read_text() == text
    assert path.stat().st_mtime_ns == before.st_mtime_ns


@pytest.mark.parametrize("text, message", [
    ('{"port": "7411"}', r"line 1: 'port': expected an integer, got a string"),
    ('{"port": 70000}', r"between 0 and 65535"),
    ('{"log_prompts": "yes"}', r"expected true or false"),
    ('{"draft_strategy": "magic"}', r"one of auto, ngram"),
    ('{\n"prot": 1}', r"line 2: unknown setting 'prot'"),
    # the line of the key itself, not of the first text that spells it (a comment, a nested key)
    ('{\n  // "prot" was a typo\n  "prot": 1}', r"line 3: unknown setting 'prot'"),
    # a repeated key: JSON parsers keep the last, so editing the first would change nothing
    ('{\n  "port": 7411,\n  // ...\n  "port": 7412\n}', r"line 4: 'port' is set again \(first at line 2\); keep one"),
    ('{"upstream": {"url": "http://a:1",\n "url": "http://b:2"}}', r"line 2: 'url' is set again \(first at line 1\)"),
    ('[1, 2]', r"expected a JSON object at the top level"),
    ('{"device": "tpu"}', r"'device': expected auto, cpu, cuda, cuda:N, mps or xpu, got a string \"tpu\""),
    ('{"dtype": "float8"}', r"'dtype': expected one of auto, float32, fp32, bfloat16, bf16, float16, fp16"),
    ('{"host": "not a host!!"}', r"'host': expected an IP address or a host name"),
    ('{"host": "-x.example"}', r"'host': expected an IP address or a host name"),
    # not finite, or past any use: status --json wrote NaN (no JSON) and `specd complete` overflowed on them
    ('{"request_timeout": 1e999}', r"'request_timeout': expected a finite number"),
    ('{"queue_size": null}', r"'queue_size': expected an integer, got null$"),
    ('{"request_timeout": 1e12}', r"between 0.001 and 86400"),
    ('{"keep_alive": 1e12}', r"between -1 and 31536000"),
    ('{"port": 1' + "0" * 5000 + '}', r"not readable as settings"),
    ("[" * 100_000, r"nested too deeply|line 1"),
])
def test_wrong_values_in_file_are_refused_with_a_message(tmp_path, text, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(write(tmp_path, text), env={})


def test_env_values_are_parsed_and_checked(tmp_path):
    env = {"SPECD_LOG_PROMPTS": "true", "SPECD_ALLOWED_ORIGINS": "http://a, http://b",
           "SPECD_DRAFTER": "none", "SPECD_KEEP_ALIVE": "2.5"}
    settings = load_settings(tmp_path / "none.json", env=env)
    assert settings.log_prompts is True
    assert settings.allowed_origins == ["http://a", "http://b"]
    assert settings.drafter is None
    assert settings.keep_alive == 2.5
    with pytest.raises(SettingsError, match="SPECD_QUEUE_SIZE: expected an integer, got 'many'"):
        load_settings(tmp_path / "none.json", env={"SPECD_QUEUE_SIZE": "many"})
    for text in ("nan", "inf", "-inf"):
        with pytest.raises(SettingsError, match="SPECD_REQUEST_TIMEOUT: expected a finite number"):
            load_settings(tmp_path / "none.json", env={"SPECD_REQUEST_TIMEOUT": text})
        with pytest.raises(SettingsError, match="expected a finite number"):
            load_settings(tmp_path / "none.json", env={}, flags={"keep_alive": text})


def test_invalid_utf8_file(tmp_path):
    path = tmp_path / "settings.json"
    path.write_bytes(b'{"host": "\xff"}')
    with pytest.raises(SettingsError, match="not valid UTF-8"):
        load_settings(path, env={})


@pytest.mark.parametrize("device", ["auto", "cpu", "cpu:0", "cuda", "cuda:1", "mps", "xpu"])
@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "0.0.0.0", "::", "", "localhost", "my-box.lan", "box."])
def test_devices_and_hosts_that_are_accepted(tmp_path, device, host):
    settings = load_settings(write(tmp_path, f'{{"device": "{device}", "host": "{host}"}}'), env={})
    assert (settings.device, settings.host) == (device, host)


def test_a_relative_model_path_in_the_file_is_the_files_neighbour_wherever_specd_runs(tmp_path, monkeypatch):
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    path = write(tmp_path, '{"verifier": "./models/m.gguf", "drafter": "../d"}')
    settings = load_settings(path, env={})
    assert settings.verifier == str(tmp_path / "models" / "m.gguf")
    assert settings.drafter == str(tmp_path.parent / "d")
    for kept in ("smollm2-135m", "Qwen/Qwen2.5-Coder-1.5B", "/abs/m.gguf", "~/m.gguf"):
        assert load_settings(write(tmp_path, f'{{"verifier": "{kept}"}}'), env={}).verifier == kept
    assert load_settings(write(tmp_path, '{"verifier": "m.gguf"}'), env={}).verifier == str(tmp_path / "m.gguf")
    (tmp_path / "models" / "coder").mkdir(parents=True)  # a folder beside settings.json wins over a hub id
    assert load_settings(write(tmp_path, '{"verifier": "models/coder"}'), env={}).verifier == \
        str(tmp_path / "models" / "coder")
    assert load_settings(write(tmp_path, '{"verifier": "org/coder"}'), env={}).verifier == "org/coder"
