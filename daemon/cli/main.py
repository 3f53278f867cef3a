"""The `specd` command line.

Only `serve` (and `start`'s child) imports torch; status/stop/logs/complete/lsp stay fast to start (`complete`:
complete.py).
Exit codes: 0 ok, 1 failure (`status`: a daemon that runs but does not answer), 2 bad usage or settings (`complete`:
also a text with nothing to complete), 3 `status`: not running, 141 the reader of stdout went away (`| head`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from specd.daemon import __version__
from specd.daemon.config.paths import get_paths
from specd.daemon.config.settings import (MODEL_SETTINGS, SETTING_NAMES, SPAWN_KEY_ENV, Settings, SettingsError,
                                          load_settings, local_model_path, setting_kind, settings_record,
                                          shown_flags, with_flag_key)
from .complete import cmd_complete

EXIT_NOT_RUNNING = 3
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as `git log | head` and coreutils end

_SETTING_HELP = {
    "verifier": "model that decides the output (embedded name, folder, .gguf or hub id)",
    "drafter": "smaller model that proposes tokens ('none' for no model drafter)",
    "draft_strategy": "auto, ngram, model, layer_skip, assistant, quantized or none (quantized: a GGUF verifier on "
                      "torch drafts with its own quantized weights on llama.cpp)",
    "max_draft_tokens": "most tokens drafted per verifier pass",
    "device": "auto, cpu, cuda, cuda:N or mps",
    "dtype": "auto, float32, float16 or bfloat16",
    "max_context": "context window in tokens",
    "cache_slots": "documents whose KV cache is kept",
    "threads": "CPU threads for torch or llama.cpp steps (0 = half the cores; on llama.cpp with --batch-threads 0 every "
               "core while other programs leave them idle)",
    "batch_threads": "llama.cpp: CPU threads for the prompt and verification passes (0 = auto: every core while other "
                     "programs leave them idle, else --threads)",
    "backend": "auto, torch or llamacpp: what runs the verifier (auto: a GGUF on CPU runs on llama.cpp when "
               "llama-cpp-python is installed)",
    "host": "address to listen on (default 127.0.0.1; beyond loopback the token is still required)",
    "port": "port to listen on (0 = any free port)",
    "keep_alive": "seconds the models stay loaded while unused (-1 = forever, 0 = unload after each request)",
    "allowed_origins": "browser origins allowed to call the API (comma-separated)",
    "allowed_hosts": "Host names accepted besides loopback ones (comma-separated)",
    "log_prompts": "write prompt text into the log (debugging only)",
    "queue_size": "requests that may wait for the worker before 503",
    "request_timeout": "seconds after which a request is cancelled",
    "upstream": "an OpenAI-compatible server that does the model work: its URL, or a JSON object {url, key, model, "
                "tokenizer, timeout, prompt_format} ('none' for local models)",
}


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (override SPECD_* environment and settings.json)")
    for name in SETTING_NAMES:
        flag = "--" + name.replace("_", "-")
        if setting_kind(name) == "bool":
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None,
                               help=_SETTING_HELP[name])
        else:
            group.add_argument(flag, dest=name, default=None, metavar=setting_kind(name).upper(),
                               help=_SETTING_HELP[name])


def _setting_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The setting flags given, a model's relative path made absolute against the working directory (a later
    `specd restart` from elsewhere, which gives the daemon these flags again, must find the same file)."""
    flags = {name: getattr(args, name) for name in SETTING_NAMES if getattr(args, name, None) is not None}
    for name in MODEL_SETTINGS:
        if isinstance(flags.get(name), str):
            flags[name] = local_model_path(flags[name], Path.cwd())
    return flags


def _serve_argv(flags: dict[str, Any]) -> list[str]:
    """The flags again, for the detached child."""
    argv = []
    for name, value in flags.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        else:
            argv += [flag, str(value)]
    return argv


def build_parser() -> argparse.ArgumentParser:
    """The `specd` argument parser: start, serve and restart (with a flag per setting), stop, status, logs, complete,
    and lsp and config (whose arguments their own parsers read: `main` hands them over)."""
    parser = argparse.ArgumentParser(prog="specd", description="Local code completion with speculative decoding.")
    parser.add_argument("--version", action="version", version=f"specd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("start", help="start the daemon in the background and wait until it answers")
    _add_setting_flags(p)
    p = sub.add_parser("serve", help="run the daemon in the foreground")
    _add_setting_flags(p)
    p = sub.add_parser("restart", help="stop the daemon, then start it again with the flags it was started with "
                                       "(those given here replacing theirs); settings are checked first")
    _add_setting_flags(p)
    sub.add_parser("stop", help="stop the daemon (running requests finish or are cancelled)")
    p = sub.add_parser("status", help="is it running, where, with which models")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = sub.add_parser("logs", help="show the end of the daemon's log")
    p.add_argument("-n", "--lines", type=_count, default=50, help="how many of the last lines (default 50)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")

    p = sub.add_parser("complete", help="one completion from a file position or stdin (checks a setup)",
                       description="One completion at a cursor, printed as an editor would insert it.",
                       epilog="Exit codes: 0 printed (or nothing to insert: stderr says why); 1 the daemon is not "
                              "running or failed; 2 the text cannot be read or completed: an unreadable file, a "
                              "cursor outside the text, an empty text (nothing to complete), or options the "
                              "daemon refuses (HTTP 400).")
    p.add_argument("file", nargs="?", default="-",
                   help="source file, or - for stdin (the default); an empty text exits with code 2")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--line", type=int, help="1-based line of the cursor (with --column)")
    where.add_argument("--offset", type=int, help="character offset of the cursor")
    p.add_argument("--column", type=int, help="1-based column of the cursor (with --line; default 1)")
    p.add_argument("--max-tokens", type=_count, default=64)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--draft-tokens", type=_count, default=None, help="0 = plain decoding")
    p.add_argument("--mode", choices=("auto", "line", "block", "none"), default="auto",
                   help="line: the rest of the line; block: lines down to the end of the cursor's block; auto "
                        "(default, as `specd lsp`): block on an empty line, else line; none: up to --max-tokens, "
                        "cut where the text starts re-typing the lines below the cursor")
    p.add_argument("--language", default=None)
    p.add_argument("--prefix-chars", type=_count, default=6000,
                   help="characters before the cursor sent, from a line start (default 6000, as `specd lsp`)")
    p.add_argument("--suffix-chars", type=_count, default=2000, help="characters after the cursor sent (default 2000)")
    p.add_argument("--json", action="store_true", help="print the daemon's whole answer (the model's text as written)")

    sub.add_parser("lsp", help="language server over stdio (editors run this)")
    sub.add_parser("config", help="write editor configuration")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `specd` command in `argv` (None: sys.argv[1:], then sys.exit with the code). Returns the exit code: the
    command's, 2 for bad settings, 130 on Ctrl-C, 141 when stdout's reader went away (module docstring)."""
    raw = sys.argv[1:] if argv is None else argv
    if raw and raw[0] in _PASS_THROUGH:  # their own parsers own every argument after the command
        args = argparse.Namespace(command=raw[0], args=raw[1:])
    else:
        args = build_parser().parse_args(raw)
    handler = _COMMANDS[args.command]
    try:
        code = handler(args)
        if not sys.stdout.closed:  # the language server closes stdout when the editor says `exit`
            sys.stdout.flush()
    except SettingsError as e:
        print(f"specd: {e}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # The reader is gone (`specd status | head -3`): what it did not read is not wanted. Python would
        # print a traceback when it flushes stdout at exit; point stdout at /dev/null so it cannot.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_BROKEN_PIPE
    if argv is None:
        sys.exit(code)
    return code


def _progress(message: str) -> None:
    print(f"specd: {message}", file=sys.stderr, flush=True)


def _load(args: argparse.Namespace) -> Settings:
    return load_settings(get_paths().settings_file, flags=_setting_flags(args))


def cmd_serve(args: argparse.Namespace) -> int:
    """`specd serve`: run the daemon in the foreground with settings.json, SPECD_* and the flags (an --upstream key
    `specd start` passed in SPAWN_KEY_ENV put back); returns the daemon's exit code. Raises SettingsError for bad
    settings (exit code 2)."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=_log_format())
    key = os.environ.pop(SPAWN_KEY_ENV, None)  # `specd start` kept an --upstream key off the command line
    if key is not None and args.upstream is not None:
        args.upstream = with_flag_key(["--upstream", args.upstream], key)[1]
    settings = _load(args)
    from specd.daemon.process.lifecycle import serve

    return serve(settings, get_paths(), _serve_argv(_setting_flags(args)))


def _log_format() -> str:
    from specd.daemon.process.lifecycle import LOG_FORMAT

    return LOG_FORMAT


def cmd_start(args: argparse.Namespace, serve_argv: list[str] | None = None) -> int:
    """`specd start` (and the second half of `restart`, with `serve_argv`): check the settings a daemon would run with,
    remember the start flags, start it detached and wait until it answers; when one runs already, say which settings
    differ. Returns 0, 1 when it could not start, 2 for bad settings."""
    from specd.daemon.process.lifecycle import DaemonError, daemon_status, port_problem, start_background
    from specd.daemon.process.state import live_state, lock_is_held, write_start_flags

    restarting = serve_argv is not None  # (cmd_restart checked the port already, before it stopped the daemon)
    if serve_argv is None:
        serve_argv = _serve_argv(_setting_flags(args))
    try:  # a bad settings.json, SPECD_* or flag is reported here, not in a log file
        settings = _effective(serve_argv, models_there=live_state(get_paths()) is None)
        # a port another program holds, said before a daemon loads torch to find it out (while none runs or starts:
        # a starting daemon, which holds the lock, may hold the port already and is waited for below)
        if not restarting and settings.port and not lock_is_held(get_paths().lock_file):
            problem = port_problem(settings.host, settings.port)
            if problem:
                raise SettingsError(problem)
    except SettingsError as e:
        print(f"specd: {e}", file=sys.stderr)
        running = live_state(get_paths())
        if running:
            print(f"specd: {_keeps_running(running)}", file=sys.stderr)
        return 2
    if live_state(get_paths()) is None:  # a daemon starts: its flags outlive it, should it fail to start or die
        write_start_flags(get_paths(), serve_argv)
    try:
        state, already = start_background(get_paths(), serve_argv, _progress)
    except DaemonError as e:
        print(f"specd: {e}", file=sys.stderr)
        return 1
    if already:
        print(f"specd is already running at {state['url']} (pid {state['pid']})")
        given = _serve_argv(_setting_flags(args))
        report = daemon_status(get_paths())
        restart = " ".join(["specd restart", *given])
        try:  # what `specd restart` with these flags would run: the daemon's own start flags, these replacing theirs
            flags = _argv_flags(_merged_argv(list(report.get("flags") or []), given))
            changes = _changes(_effective_flags(flags), report, _sources(flags, set(_setting_flags(args))))
        except SettingsError as e:
            print(f"`{restart}` would fail: {e}")
            return 0
        if changes:
            print(f"it runs with other settings: {', '.join(changes)}; `{restart}` applies them")
    else:
        print(f"specd is running at {state['url']} (pid {state['pid']})")
    return 0


def _keeps_running(state: dict) -> str:
    return f"specd keeps running at {state['url']} (pid {state['pid']}) with its old settings"


class _ArgvParser(argparse.ArgumentParser):
    def error(self, message: str):
        raise SettingsError(f"the daemon's start flags: {message}")


def _argv_flags(argv: list[str]) -> dict[str, Any]:
    """The settings that `specd serve ARGV` takes from its command line (as _setting_flags gives them)."""
    parser = _ArgvParser(prog="specd serve", add_help=False)
    _add_setting_flags(parser)
    return _setting_flags(parser.parse_args(argv))


def _effective_flags(flags: dict[str, Any]) -> Settings:
    return load_settings(get_paths().settings_file, flags=flags)


def _effective(serve_argv: list[str], models_there: bool = False) -> Settings:
    """The settings a daemon started as `specd serve SERVE_ARGV` from here would run with: settings.json, this
    process's SPECD_* environment (the daemon inherits it) and the flags, read exactly as cmd_serve reads them.
    Raises SettingsError as the daemon would; with `models_there`, also for a model it could not find (which the
    daemon would find only after loading torch, or after `specd restart` had stopped the running one)."""
    settings = _effective_flags(_argv_flags(serve_argv))
    for name in MODEL_SETTINGS if models_there and not settings.upstream else ():  # an upstream loads neither
        problem = _model_problem(getattr(settings, name, None))
        if problem:
            raise SettingsError(f"{name}: {problem}")
    return settings


def _model_problem(spec: str | None) -> str | None:
    """What models/loading.py (resolve_model) would refuse in a model setting before loading anything: a local
    file or folder (a `.gguf` path, an absolute or ./ ~ path) that does not exist, or a name that is neither an
    embedded model, a folder nor a hub id ("org/name"); None otherwise (a hub id is checked when the daemon
    loads it)."""
    from specd.daemon.models.embedded import EMBEDDED

    if not spec or spec in EMBEDDED:
        return None
    path = Path(spec).expanduser()
    if path.suffix == ".gguf" or path.is_absolute() or spec.startswith((".", "~")):
        return None if path.exists() else f"{path} does not exist"
    if not path.is_dir() and spec.count("/") != 1:
        return (f"unknown model {spec!r}: use an embedded name ({', '.join(EMBEDDED)}), a folder, a .gguf file or a "
                "hub id (org/name)")
    return None


def _sources(flags: dict[str, Any], given: set[str]) -> dict[str, str]:
    """Where each setting's value comes from for a daemon started with `flags` (`given`: those on this command line,
    the others kept from the running daemon's start): a flag, SPECD_<NAME>, settings.json or the default."""
    from specd.daemon.config.settings import ENV_PREFIX, read_settings_file

    in_file = read_settings_file(get_paths().settings_file)
    sources = {}
    for name in SETTING_NAMES:
        env_name = ENV_PREFIX + name.upper()
        if name in flags:
            flag = "--" + name.replace("_", "-")
            sources[name] = flag if name in given else f"{flag} of its start"
        elif env_name in os.environ:
            sources[name] = env_name
        elif name in in_file:
            sources[name] = "settings.json"
        else:
            sources[name] = "default"
    return sources


def _changes(requested: Settings, report: dict, sources: dict[str, str] | None = None) -> list[str]:
    """Each setting whose `requested` value differs from the one the running daemon has in effect, as
    "name old -> new", followed by " (source)" where `sources` names it (`report`: daemon_status's, with the
    `settings` the daemon wrote at its start). What the daemon resolved counts too: the device, dtype and backend
    its models loaded on, the port it got for `port: 0`. Empty when the daemon does not tell its settings (one
    started by an older specd)."""
    running = report.get("settings")
    if not isinstance(running, dict):
        return []
    models = report.get("models") or {}
    resolved = {"device": models.get("device"), "dtype": models.get("dtype"), "backend": models.get("backend"),
                "port": report.get("port")}
    wanted = settings_record(requested)
    return [f"{name} {_shown(running.get(name))} -> {_shown(wanted[name])}"
            + (f" ({sources[name]})" if sources and name in sources else "")
            for name in SETTING_NAMES
            if wanted[name] != running.get(name) and (name not in resolved or wanted[name] != resolved[name])]


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop the daemon and drop the flags of its start: the next start or restart reads settings.json alone."""
    from specd.daemon.process.state import forget_start_flags

    if not _stop():
        return 1
    forget_start_flags(get_paths())
    return 0


def _stop() -> bool:
    """Stop the daemon, saying so; False (after saying why) when it would not exit."""
    from specd.daemon.process.lifecycle import DaemonError, stop_daemon

    try:
        state = stop_daemon(get_paths(), _progress)
    except DaemonError as e:
        print(f"specd: {e}", file=sys.stderr)
        return False
    print("specd was not running" if state is None else f"specd stopped (pid {state['pid']})")
    return True


def cmd_restart(args: argparse.Namespace) -> int:
    """The daemon comes back with the flags it was started with, those given here replacing theirs: the running
    daemon's, or when none runs (its start failed, it died) those its start remembered (state.write_start_flags).
    The settings the new daemon would run with are read first: when they are bad, the running daemon is left
    running."""
    from specd.daemon.process.lifecycle import port_problem
    from specd.daemon.process.state import live_state, read_start_flags

    previous = live_state(get_paths()) or {}
    kept = previous.get("flags") if previous else read_start_flags(get_paths())
    given = _serve_argv(_setting_flags(args))
    serve_argv = _merged_argv(list(kept or []), given)
    try:
        settings = _effective(serve_argv, models_there=True)
        # The running daemon holds its own port until it stops: on that port only the host can be tried now.
        port = settings.port if settings.port != previous.get("port") else 0
        moved = previous and (settings.host, settings.port) != (previous.get("host"), previous.get("port"))
        problem = port_problem(settings.host, port) if moved else None
        if problem:
            raise SettingsError(problem)
    except SettingsError as e:
        print(f"specd: {e}", file=sys.stderr)
        if previous:
            print(f"specd: not restarted: {_keeps_running(previous)}", file=sys.stderr)
        return 2
    if not previous and kept:
        replacing = ", those given here replacing theirs" if given else ""
        _progress(f"specd is not running; starting it with the flags of its last start{replacing}: "
                  f"{' '.join(serve_argv)}")
    if not _stop():
        return 1
    return cmd_start(args, serve_argv)


def _merged_argv(previous: list[str], given: list[str]) -> list[str]:
    """`previous` flags (as _serve_argv writes them: `--name value`, `--flag`, `--no-flag`) with those in `given`
    replacing the same settings' (`--no-x` and `--x` are one setting)."""
    def by_setting(argv: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        i = 0
        while i < len(argv):
            flag = argv[i]
            takes_value = i + 1 < len(argv) and not argv[i + 1].startswith("--")
            out[flag.removeprefix("--no-").removeprefix("--")] = argv[i : i + 1 + takes_value]
            i += 1 + takes_value
        return out

    merged = {**by_setting(previous), **by_setting(given)}
    return [part for flag in merged.values() for part in flag]


def cmd_status(args: argparse.Namespace) -> int:
    """`specd status [--json]`: the daemon's state, models, upstream, counters and settings (lifecycle.daemon_status),
    the remembered start flags when none runs, and a settings.json that would fail the next start. Returns 0 while it
    runs and answers, 1 while it runs without answering within 5 s (frozen, or stopped with SIGSTOP: a script's
    `specd status && ...` must not go on to requests that hang), 3 (EXIT_NOT_RUNNING) when none runs."""
    from specd.daemon.process.lifecycle import daemon_status
    from specd.daemon.process.state import read_start_flags

    report = daemon_status(get_paths())
    remembered = None if report["running"] else read_start_flags(get_paths())
    if remembered:
        report["start_flags"] = remembered  # what `specd restart` would give again
    try:
        load_settings(get_paths().settings_file)
    except SettingsError as e:  # the running daemon read them at its start; the next start would fail
        report["settings_error"] = str(e)
    for name in ("flags", "start_flags"):  # an upstream key given as a flag is not printed
        if report.get(name):
            report[name] = shown_flags(report[name])
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(_describe(report))
    if not report["running"]:
        return EXIT_NOT_RUNNING
    return 0 if report.get("responding") else 1


def _describe(report: dict) -> str:
    if not report["running"]:
        return "\n".join(["specd is not running (start it with `specd start`)", *_settings_line(report)])
    lines = [f"specd {report.get('version')} running at {report['url']} (pid {report['pid']})"]
    if not report.get("responding"):
        lines.append(f"not answering: {report.get('error')}")
        return "\n".join(lines + _settings_line(report))
    lines.append(f"state: {report['state']}, device: {report.get('device') or '-'}, "
                 f"uptime: {_duration(report.get('uptime_s') or 0)}")
    models = report.get("models")
    if models:
        memory = models.get("memory_bytes")
        memory_text = "?" if memory is None else f"{memory / 2**20:.0f} MiB"
        dtype = f" ({models['dtype']})" if models.get("dtype") else ""
        backend = f" on {models['backend']}{dtype}" if models.get("backend") else ""
        lines.append(f"verifier: {models.get('verifier')}{backend}, drafter: {models.get('drafter') or 'none'} "
                     f"({models.get('draft_strategy')}), memory: {memory_text}")
        if models.get("threads"):
            lines.append(f"threads: {models['threads']}")
        if models.get("pass_costs"):
            lines.append("pass costs, relative to a one-token step on as many threads: " + "; ".join(
                f"{threads} thread(s) " + (" ".join(f"{c:.2f}" for c in costs) if costs else
                                           "not measured yet (other programs kept the cores busy; measured while "
                                           "specd is idle, priced as on fewer threads meanwhile)")
                for threads, costs in models["pass_costs"].items()))
    elif report.get("load_error"):
        lines.append(f"models failed to load: {report['load_error']}")
    elif report.get("state") == "loading":
        lines.append("models: loading (`specd logs` shows how far; requests wait for them)")
    else:
        lines.append("models: not loaded (they load on the next request)")
    upstream = report.get("upstream")
    if upstream:  # models/upstream.py: asked just now
        served = f"answers, serving {', '.join(map(str, upstream.get('models') or [])) or '?'}"
        answer = (f"answers, but: {upstream['error']}" if upstream.get("error") else served) \
            if upstream.get("answering") else f"not answering: {upstream.get('error')}"
        lines.append(f"upstream: {upstream.get('url')} ({upstream.get('server') or 'server unknown'}): {answer}")
    rate = report.get("acceptance_rate")
    lines.append(f"requests served: {report.get('requests_served')}, acceptance rate: "
                 + ("-" if rate is None else f"{rate:.0%}"))
    lines += _settings_line(report)
    lines.append(f"token file: {report['token_file']}")
    lines.append(f"log: {report['log_file']}")
    return "\n".join(lines)


def _settings_line(report: dict) -> list[str]:
    """Where the settings come from: settings.json's path, and the flags the daemon was started with, which win
    over it and which `specd restart` keeps."""
    path = report.get("settings_file")
    lines = [f"settings: {path}" + ("" if Path(path).exists() else " (not created: defaults)")] if path else []
    if report.get("settings_error"):
        lines.append(f"settings are not valid now: {report['settings_error']} (a start or restart would fail; "
                     "a running daemon keeps the settings it started with)")
    if report.get("running") and report.get("flags"):
        lines.append(f"start flags: {' '.join(report['flags'])} (over settings.json; `specd restart` keeps them, "
                     "`specd stop` and `specd start` drop them)")
    if not report.get("running") and report.get("start_flags"):
        lines.append(f"last start's flags: {' '.join(report['start_flags'])} (`specd restart` gives them again, "
                     "`specd stop` and `specd start` drop them)")
    return lines


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _count(text: str) -> int:
    """A whole number of 0 or more, for argparse (`-n -5` used to print all but the first 5 lines)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; give 0 or more")
    return value


def cmd_logs(args: argparse.Namespace) -> int:
    """`specd logs [-n N] [-f]`: print the log's last N lines, with -f then follow it. Returns 0, or 1 when there is no
    log file (without -f)."""
    from specd.daemon.process.lifecycle import tail_log
    from specd.daemon.process.log_file import follow

    log_file = get_paths().log_file
    try:
        shown = log_file.stat().st_size  # -f goes on from here: nothing written meanwhile is lost
    except FileNotFoundError:
        shown = 0
    text = tail_log(log_file, args.lines)
    if text:
        print(text)
    if not log_file.exists():
        print(f"specd logs: no log at {log_file} yet: the daemon writes it once `specd start` runs"
              + ("; waiting for it" if args.follow else ""), file=sys.stderr)
    if not args.follow:
        return 0 if log_file.exists() else 1

    def write(line: str) -> None:
        sys.stdout.write(line)
        sys.stdout.flush()

    follow(log_file, write, start=shown)
    return 0


def cmd_lsp(args: argparse.Namespace) -> int:
    """`specd lsp ...`: run the language server (lsp.server.main) with the remaining arguments; returns its exit code,
    or 1 when it is not installed."""
    try:
        from specd.lsp.server import main as lsp_main
    except ImportError as e:
        print(f"specd: the language server is not available in this installation ({e})", file=sys.stderr)
        return 1
    return lsp_main(args.args)


def cmd_config(args: argparse.Namespace) -> int:
    """`specd config ...`: editor_config.main with the remaining arguments; returns its exit code, or 1 when it is not
    installed."""
    try:
        from .editor_config import main as config_main
    except ImportError as e:
        print(f"specd: `specd config` is not available in this installation ({e})", file=sys.stderr)
        return 1
    return config_main(args.args) or 0


_PASS_THROUGH = ("lsp", "config")
_COMMANDS = {
    "start": cmd_start, "serve": cmd_serve, "restart": cmd_restart, "stop": cmd_stop, "status": cmd_status,
    "logs": cmd_logs, "complete": cmd_complete, "lsp": cmd_lsp, "config": cmd_config,
}

if __name__ == "__main__":
    main()
