"""The command line of `specd lsp`, including the transport arguments LSP clients append.

vscode-languageclient (`node/main.js`, `ServerOptions` with `transport`) appends `--stdio` for stdio, `--pipe=NAME`
for pipes, `--socket=N` for sockets and `--node-ipc` for Node IPC, and `--clientProcessId=PID` when it runs the
server as a Node module; other clients pass `--stdio` by habit. specd speaks stdio only: `--stdio` is accepted,
the other transports are refused with a message that says what to configure instead.
"""

from __future__ import annotations

import argparse

OTHER_TRANSPORTS = ("--node-ipc", "--socket", "--pipe", "--port")


class TransportError(ValueError):
    """A transport other than stdio was asked for; the message says what to change."""


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of `specd lsp`: -v/--verbose, --stdio (accepted: stdio is the only transport) and
    --clientProcessId/--client-process-id (accepted, unused, hidden). `parse` refuses the other transports before it
    runs."""
    parser = argparse.ArgumentParser(prog="specd lsp", description="Language server over stdio.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log specd's own debug messages to stderr")
    parser.add_argument("--stdio", action="store_true", help="talk LSP over stdin/stdout (the default and only transport)")
    # Accepted and not needed: the server exits when its stdin closes, which is when the editor is gone.
    parser.add_argument("--clientProcessId", "--client-process-id", dest="client_process_id", type=int, default=None,
                        metavar="PID", help=argparse.SUPPRESS)
    return parser


def parse(argv: list[str] | None) -> argparse.Namespace:
    """Parsed arguments. Raises TransportError for --node-ipc, --socket, --pipe or --port; exits with code 2
    (argparse) for anything else it does not know."""
    for arg in argv or []:
        name = arg.split("=", 1)[0]
        if name in OTHER_TRANSPORTS:
            raise TransportError(
                f"{name} is not supported: specd lsp talks LSP over stdio only. Configure your editor to start "
                "`specd lsp` as a command with stdio (in vscode-languageclient: TransportKind.stdio).")
    return build_parser().parse_args(argv)
