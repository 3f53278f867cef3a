"""`specd complete`: one completion at a cursor, printed as an editor would insert it.

Light on purpose: it runs the language server's mode choice and cleaning (lsp/postprocess.py, plain Python) but
imports nothing else of the language server, whose modules pull in pygls, lsprotocol and aiohttp (about half a
second before the request is even sent).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

EXIT_NOTHING_TO_COMPLETE = 2  # as for any other input that cannot be completed (an unreadable file, a bad cursor)
ANSWER_MARGIN_S = 5.0  # past the daemon's request_timeout, by which it has answered (a 504 or a cut answer)
NO_DEADLINE_WAIT_S = 600.0  # for a daemon that does not tell its request_timeout


def cmd_complete(args: argparse.Namespace) -> int:
    """One completion at a cursor, printed as an editor would insert it (the language server's cleaning: see
    as_inserted); --json prints the daemon's answer as it came. An empty text is refused (exit code 2)."""
    import urllib.error
    import urllib.request

    from specd.daemon.discovery import find_daemon
    from specd.lsp.postprocess import choose_mode

    text = _read_text(args.file)
    if text is None:
        return 2
    if not text.strip():
        where = "the text from stdin" if args.file == "-" else args.file
        why = "is empty" if not text else "holds only whitespace"
        print(f"specd: nothing to complete: {where} {why}; give a FILE with code in it, or pipe code in "
              "(`printf 'def f(x):\\n    ' | specd complete`)", file=sys.stderr)
        return EXIT_NOTHING_TO_COMPLETE
    try:
        cursor = _cursor_offset(text, args)
    except ValueError as e:
        print(f"specd: {e}", file=sys.stderr)
        return 2
    daemon = find_daemon()
    if daemon is None:
        print("specd: the daemon is not running; start it with `specd start`", file=sys.stderr)
        return 1
    # The editor's windows, not the whole file: a cursor deep in a long file filled the context (seconds of prefill).
    start = max(0, cursor - args.prefix_chars)
    if start > 0 and text[start - 1] != "\n" and "\n" in text[start:cursor]:
        start = text.index("\n", start, cursor) + 1  # whole lines, unless the cursor's line alone is longer
    suffix = text[cursor : cursor + args.suffix_chars]
    line_before, line_after = text[text.rfind("\n", 0, cursor) + 1 : cursor], text[cursor:].split("\n", 1)[0]
    mode = None if args.mode == "none" else choose_mode(args.mode, line_before, line_after)
    payload = {"prefix": text[start:cursor], "suffix": suffix,
               "language": args.language,
               "path": None if args.file == "-" else args.file, "mode": mode,
               "max_tokens": args.max_tokens, "temperature": args.temperature,
               "draft_tokens": args.draft_tokens}
    request = urllib.request.Request(daemon.url + "/specd/v1/complete", data=json.dumps(payload).encode(),
                                     headers={"Authorization": f"Bearer {daemon.token}",
                                              "Content-Type": "application/json"})
    wait = answer_wait()
    try:
        with urllib.request.urlopen(request, timeout=wait) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as e:
        print(f"specd: {e.code}: {_error_message(e)}", file=sys.stderr)
        return 2 if e.code == 400 else 1  # 400: the options asked for what the daemon refuses (--temperature 9)
    except TimeoutError:
        print(f"specd: the daemon at {daemon.url} did not answer within {wait:g}s, past its request_timeout: it is "
              "stopped or stuck (`specd status` tells; `specd restart` restarts it)", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"specd: cannot reach the daemon at {daemon.url}: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    shown, note = as_inserted(answer["text"], text[:cursor], suffix, mode, answer["finish_reason"] == "length")
    if shown:
        sys.stdout.write(shown if shown.endswith("\n") else shown + "\n")
    stats = answer.get("specd", {})
    print(f"[{answer['finish_reason']}; {stats.get('completion_tokens')} tokens in {stats.get('total_s', 0):.3f}s; "
          f"drafted {stats.get('drafted_tokens')}, accepted {stats.get('accepted_tokens')}, "
          f"verifier passes {stats.get('verifier_passes')}{'; ' + note if note else ''}]", file=sys.stderr)
    return 0


def answer_wait() -> float:
    """Seconds to wait for the daemon's answer: its `request_timeout` (by then it has answered, a 504 when it had
    no text) and ANSWER_MARGIN_S, else NO_DEADLINE_WAIT_S. A frozen daemon (SIGSTOP, a hung disk) accepts the
    connection and never answers."""
    from specd.daemon.config.paths import get_paths
    from specd.daemon.process.state import live_state

    limit = ((live_state(get_paths()) or {}).get("settings") or {}).get("request_timeout")
    if isinstance(limit, (int, float)) and not isinstance(limit, bool) and limit > 0:
        return float(limit) + ANSWER_MARGIN_S
    return NO_DEADLINE_WAIT_S


def _read_text(file: str) -> str | None:
    """The document: FILE's text, or stdin's for `-`; None after saying why it cannot be read."""
    try:
        if file != "-":
            return Path(file).read_text(encoding="utf-8")
        if sys.stdin is None:  # started with stdin closed (`specd complete <&-`)
            print("specd: no text to complete: stdin is closed; give a FILE, or pipe code in", file=sys.stderr)
            return None
        if sys.stdin.isatty():
            print("specd: reading the text to complete from the terminal; end it with Ctrl-D (or give a FILE, or "
                  "pipe code in)", file=sys.stderr, flush=True)
        stdin = getattr(sys.stdin, "buffer", None)  # bytes: the text stream would escape bad bytes as surrogates
        return stdin.read().decode("utf-8") if stdin is not None else sys.stdin.read()
    except UnicodeDecodeError as e:
        where = "the text from stdin" if file == "-" else file
        print(f"specd: {where} is not UTF-8 text (byte {e.start}: {e.reason})", file=sys.stderr)
    except OSError as e:
        print(f"specd: cannot read {file}: {e.strerror or e}", file=sys.stderr)
    return None


def as_inserted(raw: str, before: str, suffix: str, mode: str | None, cut_short: bool) -> tuple[str, str | None]:
    """What an editor inserts at the cursor for the daemon's text `raw` (the native route returns the model's text
    as written and leaves this to its client), and a note for the user or None. The language server's cleaning
    (lsp/postprocess.py): line mode keeps the first line; lines that repeat the text below the cursor are cut, and
    closers the line already has after the cursor are not typed again. Where the text retypes the auto-closed rest
    of the cursor's line (`def read_lines(path|):` + `):`), the ghost text replaces that rest: when that is the same
    as inserting less before it, the less is printed (here nothing), else the text and what it replaces. Without a
    mode (`--mode none`) the text ends where it starts re-typing the text below the cursor (postprocess.cut_at_repeat)."""
    from specd.lsp import postprocess

    whole = raw
    if mode is None:
        whole = postprocess.cut_at_repeat(raw, suffix, cut_short)
        cut_short = cut_short and whole == raw  # a text cut before a repeat ends with a whole line
    text = postprocess.clean(whole, suffix, mode or "none", cut_short)
    if not text:
        return "", ("nothing to insert: the text repeats what follows the cursor" if raw.strip()
                    else "nothing to insert: the model wrote no text")
    rest = re.split(r"\r\n|\r|\n", suffix, maxsplit=1)[0]
    replaced = rest.strip() and postprocess.rest_to_replace(before[-postprocess.CONTEXT_CHARS:], text, rest)
    if not replaced:
        return text, None
    part, after = rest[:replaced], rest[replaced:]
    kept = postprocess.cut_before_rest(text, part)
    if text == kept + part or (text == kept + part.rstrip() and not after.strip()):
        return kept, None if kept else f"nothing to insert: the text retypes {part.strip()}, which follows the cursor"
    return text, f"replaces {part.strip()} after the cursor"


def _error_message(error) -> str:
    """The daemon's own message in an HTTP error answer (urllib.error.HTTPError), else the status's reason."""
    try:
        return json.load(error)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return error.reason


def _cursor_offset(text: str, args: argparse.Namespace) -> int:
    if args.column is not None and args.line is None:
        raise ValueError("--column goes with --line")
    if args.offset is not None:
        if not 0 <= args.offset <= len(text):
            raise ValueError(f"--offset {args.offset} is outside the text (0..{len(text)})")
        return args.offset
    if args.line is None:
        return len(text)
    lines = text.split("\n")
    if not 1 <= args.line <= len(lines):
        raise ValueError(f"--line {args.line} is outside the text (1..{len(lines)})")
    line, column = lines[args.line - 1], 1 if args.column is None else args.column
    if not 1 <= column <= len(line) + 1:
        raise ValueError(f"--column {column} is outside line {args.line} (1..{len(line) + 1})")
    return sum(len(l) + 1 for l in lines[: args.line - 1]) + column - 1
