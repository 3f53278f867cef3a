"""Stop rules on a character-level tokenizer, so each case reads as text."""

import random

import pytest

from fixtures.tiny_models import build_sentencepiece_tokenizer, build_tokenizer
from specd.daemon.engine.fim import (build_fim_ids, decode_anchor, detect_template, encode_text, stop_token_ids,
                              template_by_family)
from specd.daemon.engine.stopping import StopRules, StopState

EOS = 0


class CharTokenizer:
    def decode(self, ids, skip_special_tokens=False):
        return "".join(chr(i) for i in ids if i != EOS)


def run(text, **rules):
    state = StopState(StopRules(eos_ids=frozenset({EOS}), **{"max_tokens": 200, **rules}), CharTokenizer())
    streamed = []
    for ch in text:
        if state.add(ord(ch)):
            break
        streamed.append(state.stable_delta())
    state.finish_reason = state.finish_reason or "length"
    streamed.append(state.stable_delta())
    return state, "".join(streamed)


def test_stop_string_is_cut_and_never_streamed():
    state, streamed = run("return x\n# END of it", stop=("# END",))
    assert state.text == "return x\n" and state.finish_reason == "stop"
    assert streamed == "return x\n"


def test_line_mode_stops_at_end_of_line():
    state, _ = run("foo(bar)\nnext()", mode="line")
    assert state.text == "foo(bar)"


@pytest.mark.parametrize("indent, text, expected", [
    (4, "x = 1\n    y = 2\n\n    z = 3\nreturn", "x = 1\n    y = 2\n\n    z = 3"),
    (4, "if a:\n        b()\n    c()\n  d", "if a:\n        b()\n    c()"),
    (0, "def f():\n    pass\n\ndef g():", "def f():\n    pass\n"),
])
def test_block_mode_stops_when_indentation_leaves_the_block(indent, text, expected):
    state, streamed = run(text, mode="block", cursor_indent=indent)
    assert state.text == expected and state.finish_reason == "stop"
    assert streamed == expected


# At top level (cursor_indent 0) every line is in the cursor's block; each case gives the model's text and what
# the block keeps. Fed one character at a time, `streamed` (what stable_delta handed out) must equal the kept text:
# a line that could still become `else`, `end` or a fence is held back, never streamed and then cut.
TOP_LEVEL_ENDS = [
    # A Markdown fence the completion did not open (the embedded model's real answer, then a bare one).
    ("# Example usage:\nadd_2_to_top_five = lambda x: x + 2\nprint(add_2_to_top_five(5))  # Output: 7\n```\n",
     "# Example usage:\nadd_2_to_top_five = lambda x: x + 2\nprint(add_2_to_top_five(5))  # Output: 7"),
    ("x = add(1, 2)\nprint(x)\n~~~python", "x = add(1, 2)\nprint(x)"),
    ("x = 1\n```", "x = 1"),  # decided at its third character, with or without a line break after it
    # A new statement after an indented body: the definition the cursor started is the completion.
    ("def f():\n    return 1\nprint(f())", "def f():\n    return 1"),
    ("def f():\n    return 1\n@cache\ndef g():\n    return 2\n", "def f():\n    return 1"),
    ("def f():\n    pass\nelsewhere = 1", "def f():\n    pass"),  # `else` starts it, but only as a word
    ("def f():\n    pass\nend = time()", "def f():\n    pass"),  # `end` as a name being assigned
    ("total = add(\n    1,\n    2,\n)\nprint(total)", "total = add(\n    1,\n    2,\n)"),
    # A closer at column 0 is kept and the block ends after it.
    ("function f() {\n  return 1;\n}\nconsole.log(f());\n", "function f() {\n  return 1;\n}"),
    ("int main(void) {\n    return 0;\n}\nint g", "int main(void) {\n    return 0;\n}"),
    ("def greet\n  puts 'hi'\nend\ngreet\n", "def greet\n  puts 'hi'\nend"),
    ("if [ -f x ]; then\n  rm x\nfi\necho done", "if [ -f x ]; then\n  rm x\nfi"),
    ("for f in *; do\n  echo $f\ndone\nexit 0", "for f in *; do\n  echo $f\ndone"),
    ("<div>\n  <p>hi</p>\n</div>\n<footer>", "<div>\n  <p>hi</p>\n</div>"),
]

TOP_LEVEL_KEEPS = [
    "if a:\n    b()\nelse:\n    c()\n",
    "try:\n    x()\nexcept ValueError:\n    y()\nfinally:\n    z()\n",
    "if (a) {\n  b();\n}\nelse {\n  c();\n}\n",
    "if (a) {\n  b();\n} else {\n  c();\n}\n",
    "try {\n  f();\n}\ncatch (e) {\n  g(e);\n}\n",
    "begin\n  x\nrescue => e\n  y\nensure\n  z\nend\n",
    "case $1 in\n  a) echo a ;;\nesac\n",
    "#ifdef DEBUG\nvoid log(void) {\n    puts(\"x\");\n}\n#endif\n",
    "/**\n * Adds one.\n */\nfunction inc(x) {\n  return x + 1;\n}\n",  # a doc comment's ` * ` is no body
    "@dataclass\nclass Point:\n    x: int\n",
    "import os\nimport sys\n",  # one-line statements run on until a blank line, as before
    "```python\nprint(1)\n```\n",  # a fence the completion opened keeps its closing fence (Markdown)
]


@pytest.mark.parametrize("text, expected", TOP_LEVEL_ENDS)
def test_top_level_block_ends_at_a_fence_or_after_a_statement_with_a_body(text, expected):
    state, streamed = run(text, mode="block", cursor_indent=0)
    assert state.text == expected and state.finish_reason == "stop"
    assert streamed == expected


@pytest.mark.parametrize("text", TOP_LEVEL_KEEPS)
def test_top_level_block_keeps_lines_that_go_on_with_the_statement(text):
    state, streamed = run(text, mode="block", cursor_indent=0)
    assert state.text == text and state.finish_reason == "length"
    assert streamed == text


def test_top_level_block_holds_back_a_line_that_may_become_a_continuation():
    state = StopState(StopRules(eos_ids=frozenset({EOS}), mode="block", max_tokens=200), CharTokenizer())
    streamed = ""
    for ch in "if a:\n    b()\nels":
        state.add(ord(ch))
        streamed += state.stable_delta()
    assert streamed == "if a:\n    b()"  # `els` may be `else:` (kept) or `elsewhere` (the end)
    for ch in "e:\n    c()":
        state.add(ord(ch))
        streamed += state.stable_delta()
    assert streamed == "if a:\n    b()\nelse:\n    c()"


@pytest.mark.parametrize("pieces", [
    ["def f():\n    return 1\nprint(f())\n```\n"],
    ["def f():\n    return 1\n", "pr"],
])
def test_top_level_block_ends_in_text_from_an_upstream_server(pieces):
    state = StopState(StopRules(eos_ids=frozenset(), mode="block"), CharTokenizer())
    assert [state.add_text(piece) for piece in pieces] == [False] * (len(pieces) - 1) + [True]
    assert state.text == "def f():\n    return 1" and state.finish_reason == "stop"


def test_max_tokens_and_eos():
    state, _ = run("abcdef", max_tokens=3)
    assert (state.text, state.finish_reason) == ("abc", "length")
    state = StopState(StopRules(eos_ids=frozenset({EOS}), max_tokens=9), CharTokenizer())
    assert not state.add(ord("a")) and state.add(EOS)
    assert (state.text, state.finish_reason) == ("a", "stop")


def test_incomplete_characters_are_held_back():
    class ByteTokenizer:
        def decode(self, ids, skip_special_tokens=False):
            return bytes(ids).decode("utf-8", errors="replace")

    state = StopState(StopRules(eos_ids=frozenset(), max_tokens=9), ByteTokenizer())
    euro = "€".encode()
    state.add(ord("a"))
    state.add(euro[0])
    assert state.stable_delta() == "a"
    state.add(euro[1]), state.add(euro[2])
    assert state.stable_delta() == "€"


def test_fim_layout_keeps_the_cursor_line_at_the_tail(tiny_pair):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_pair[0])
    template = detect_template(tokenizer)
    assert template.family == "starcoder"
    ids = build_fim_ids(tokenizer, template, "def f(x):\n    ret", "urn\n\nprint(1)")
    assert tokenizer.decode(ids) == "<fim_prefix>def f(x):\n<fim_suffix>urn\n\nprint(1)<fim_middle>    ret"
    # Typing on the cursor line changes only the end of the token sequence.
    longer = build_fim_ids(tokenizer, template, "def f(x):\n    retu", "rn\n\nprint(1)")
    marker = tokenizer.convert_tokens_to_ids("<fim_middle>")
    assert longer.index(marker) > 0
    # User text that looks like a marker stays text.
    literal = build_fim_ids(tokenizer, template, "s = '<fim_suffix>'\n", "")
    assert literal.count(tokenizer.convert_tokens_to_ids("<fim_suffix>")) == 1


def test_the_stable_cut_stays_put_until_the_count_passes_it():
    from specd.daemon.engine.fim import _stable_ceiling

    for slack in (0, 1, 7, 8, 250, 1000):
        cuts = [_stable_ceiling(count, slack) for count in range(0, 5000)]
        assert cuts[0] == 0 and all(count <= cut <= count + slack for count, cut in enumerate(cuts) if count)
        moves = [count for count in range(2, 5000) if cuts[count] != cuts[count - 1]]
        assert all(count > cuts[count - 1] for count in moves)  # only when the count passed the cut
        assert len(moves) <= 5000 // ((slack + 2) // 2) + 1


def _shared(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


@pytest.mark.parametrize("budget", [None, 4096, 600])
def test_enter_leaves_the_suffix_part_cached_for_several_lines(budget):
    # llama.vim's layout moves the line Enter ends into the prefix part, before the suffix part: every new line
    # read the whole suffix again. Here the finished lines stay after the middle marker for up to 8 lines.
    tokenizer = build_tokenizer(vocab_size=512, fim=True)
    template = detect_template(tokenizer)
    above = "".join(f"value_{i} = compute({i})\n" for i in range(40))
    suffix = "\n" + "".join(f"print(value_{i})\n" for i in range(60))
    typed = [f"total_{i} = value_{i} + 1\n" for i in range(16)]
    prompts = [build_fim_ids(tokenizer, template, above + "".join(typed[:n]), suffix, budget) for n in range(17)]
    read_again = [len(prompts[n]) - _shared(prompts[n - 1], prompts[n]) for n in range(1, 17)]
    # A line is ~13 tokens: more than 110 means more than the middle part was read again. The middle part
    # restarts at lines 40 and 48; with 600 tokens the oldest prefix tokens are also cut every 64 tokens added.
    assert sum(r > 110 for r in read_again) <= (2 if budget != 600 else 4), read_again
    for prompt in prompts:
        assert budget is None or len(prompt) <= budget
        assert budget == 600 or tokenizer.decode(prompt).startswith("<fim_prefix>value_0 = compute(0)\n")


def test_typing_on_a_line_keeps_every_token_before_the_middle_marker_when_trimmed():
    # With fit_context the room left for the prefix and suffix parts shrinks as the middle part grows; fitted
    # with a reserve for that growth, the far ends stay cut where they were for most keystrokes.
    tokenizer = build_tokenizer(vocab_size=512, fim=True)
    template = detect_template(tokenizer)
    above = "".join(f"value_{i} = compute({i})\n" for i in range(300))
    suffix = "\n" + "".join(f"print(value_{i})\n" for i in range(300))
    line = "    result = combine(value_1, value_2, value_3) + adjust(value_4)"
    marker = tokenizer.convert_tokens_to_ids("<fim_middle>")
    prompts = [build_fim_ids(tokenizer, template, above + line[:n], suffix, 1024) for n in range(len(line) + 1)]
    assert all(len(p) <= 1024 for p in prompts)
    changed = [n for n in range(1, len(prompts)) if prompts[n][: prompts[n].index(marker) + 1]
               != prompts[n - 1][: prompts[n - 1].index(marker) + 1]]
    assert len(changed) <= 2, changed


def test_a_small_context_keeps_only_the_cursor_line_after_the_middle_marker():
    tokenizer = build_tokenizer(vocab_size=512, fim=True)
    template = detect_template(tokenizer)
    prefix = "".join(f"value_{i} = compute({i})\n" for i in range(200)) + "result = val"
    ids = build_fim_ids(tokenizer, template, prefix, "\nprint(result)\n", budget=256)
    assert tokenizer.decode(ids).endswith("value_199 = compute(199)\n<fim_suffix>\nprint(result)\n<fim_middle>result = val")
    roomy = build_fim_ids(tokenizer, template, prefix, "\nprint(result)\n")
    assert tokenizer.decode(roomy).endswith("<fim_middle>" + "".join(f"value_{i} = compute({i})\n" for i in range(192, 200))
                                            + "result = val")


def test_templates_cover_the_common_families():
    for family in ("qwen2.5-coder", "starcoder", "codegemma", "deepseek-coder", "codellama", "codestral"):
        assert template_by_family(family).family == family
    with pytest.raises(KeyError):
        template_by_family("nonesuch")


@pytest.fixture(scope="module")
def plain_tokenizer():
    return build_tokenizer(vocab_size=300, fim=False)


def _with_specials(tokenizer, specials):
    import copy

    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    return tokenizer


@pytest.mark.parametrize("specials, family, end_of_file", [
    (["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|fim_pad|>", "<|file_sep|>"], "qwen2.5-coder",
     "<|file_sep|>"),
    # CodeGemma shares Qwen's markers; only its own file separator tells them apart.
    (["<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|file_separator|>"], "codegemma",
     "<|file_separator|>"),
    (["<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<file_sep>"], "starcoder", "<file_sep>"),
])
def test_families_sharing_markers_keep_their_own_stop_tokens(plain_tokenizer, specials, family, end_of_file):
    tokenizer = _with_specials(plain_tokenizer, specials)
    template = detect_template(tokenizer)
    assert template.family == family
    assert tokenizer.convert_tokens_to_ids(end_of_file) in stop_token_ids(tokenizer, template)


@pytest.mark.parametrize("specials", [["[PREFIX]", "[SUFFIX]", "[MIDDLE]"], ["[SUFFIX]", "[PREFIX]"]])
def test_codestral_puts_the_suffix_first_and_has_no_middle_marker(plain_tokenizer, specials):
    tokenizer = _with_specials(plain_tokenizer, specials)
    template = detect_template(tokenizer)
    assert template.family == "codestral"
    ids = build_fim_ids(tokenizer, template, "def f(x):\n    ret", "urn\n\nprint(1)")
    # mistral-common's layout, <s>[SUFFIX]suffix[PREFIX]prefix, with the cursor line at the very end.
    assert tokenizer.decode(ids) == "[SUFFIX]urn\n\nprint(1)[PREFIX]def f(x):\n    ret"


def test_no_markers_means_plain_completion(plain_tokenizer):
    assert detect_template(plain_tokenizer) is None
    assert detect_template(_with_specials(plain_tokenizer, ["<|fim_prefix|>", "<|fim_suffix|>"])) is None


def _text(tokenizer, ids):
    return "".join(tokenizer.convert_ids_to_tokens(ids)).replace("▁", " ")


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("specials, family, parts", [
    (["▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>"], "codellama",
     {"▁<PRE>": " def f(x):\n", "▁<SUF>": "urn x\n", "▁<MID>": "    ret"}),
    (["[PREFIX]", "[SUFFIX]", "[MIDDLE]"], "codestral", {"[SUFFIX]": "urn x\n", "[PREFIX]": " def f(x):\n    ret"}),
])
def test_suffix_and_cursor_line_get_no_spurious_leading_space(specials, family, parts, legacy):
    tokenizer = build_sentencepiece_tokenizer(tuple(specials), legacy=legacy)
    template = detect_template(tokenizer)
    assert template.family == family
    ids = build_fim_ids(tokenizer, template, "def f(x):\n    ret", "urn x\n")
    markers = [i for i, t in enumerate(ids) if t in tokenizer.all_special_ids]
    found = {tokenizer.convert_ids_to_tokens(ids[i]): _text(tokenizer, ids[i + 1: end])
             for i, end in zip(markers, markers[1:] + [len(ids)]) if ids[i] != tokenizer.bos_token_id}
    # Only the prefix part starts with the tokenizer's own space, as in the reference FIM encoders.
    assert found == parts


@pytest.mark.parametrize("legacy", [False, True])
def test_a_completion_keeps_its_leading_space_with_sentencepiece_tokenizers(plain_tokenizer, legacy):
    tokenizer = build_sentencepiece_tokenizer(("▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>"), legacy=legacy)
    completion = " 1 + x\n"  # what follows "x =": its first token is "▁1"
    state = StopState(StopRules(eos_ids=frozenset(), max_tokens=99), tokenizer, tuple(decode_anchor(tokenizer)))
    for token in encode_text(tokenizer, completion, continuation=True):
        state.add(token)
    assert state.text == completion
    assert decode_anchor(plain_tokenizer) == []  # byte-level BPE decodes a leading space as it is
