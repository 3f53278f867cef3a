"""Other files of the project before the current file's prefix, in the layout the model reads best.

Models pretrained on whole repositories with a file separator token (StarCoder2's layout,
`<file_sep>path\ncode<file_sep>path\ncode`; SmolLM2 has the token on StarCoder2's vocabulary) get the files that
way, the current file last with its path, as separator token ids that no document text can forge. Other models,
and FIM models (whose prefix part the context would have to sit in), get them as commented-out lines headed by
their path (Tabby's layout), so they read as reference rather than as code of the current file.

On the embedded SmolLM2, with one other file open and a new or short current file, the commented layout made the
model continue the comments: 10 of 10 completions of an empty file and 6 of 10 after `def main():` began with
`#`, against 6 and 1 with separators (scripts/bench_context_layout.py; README, Language server).
"""

from __future__ import annotations

from .fim import encode_text, single_token_id
from .requests import ContextFile

_LINE_COMMENTS = {
    "#": ("python", "shellscript", "bash", "sh", "zsh", "fish", "ruby", "perl", "r", "yaml", "toml",
          "dockerfile", "makefile", "cmake", "elixir", "julia", "nim", "powershell", "coffeescript", "nix"),
    "--": ("sql", "lua", "haskell", "elm", "ada", "vhdl"),
    ";": ("lisp", "clojure", "scheme", "commonlisp", "racket", "elisp", "ini"),
    "%": ("erlang", "latex", "tex", "matlab", "prolog"),
}


def line_comment(language: str | None) -> str:
    """The line comment token of an LSP language id (`//` when unknown)."""
    lang = (language or "").lower()
    for token, languages in _LINE_COMMENTS.items():
        if lang in languages:
            return token
    return "//"


def commented(files: tuple[ContextFile, ...], language: str | None) -> str:
    """The files as commented-out lines, each headed by `<comment> Path: <path>`; "" for no files."""
    c = line_comment(language)
    blocks = []
    for file in files:
        lines = [f"{c} Path: {file.path}"] if file.path else []
        lines += [f"{c} {line}" if line else c for line in file.text.splitlines()]
        blocks.append("\n".join(lines) + "\n")
    return "".join(blocks)


def separated_ids(tokenizer, separator: str, files: tuple[ContextFile, ...], path: str | None) -> list[int]:
    """Token ids of `<sep>path\\ntext` per file, then `<sep>path\\n` opening the current file; [] for no files."""
    if not files:
        return []
    sep = [single_token_id(tokenizer, separator)]
    ids: list[int] = []
    for file in files:
        text = file.text if file.text.endswith("\n") else file.text + "\n"
        ids += sep + encode_text(tokenizer, f"{file.path}\n{text}")
    return ids + sep + encode_text(tokenizer, f"{path or ''}\n")
