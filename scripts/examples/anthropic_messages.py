"""The Anthropic SDK against specd: only the base URL and the key change.

    python scripts/examples/anthropic_messages.py      (a running daemon: `specd start`)

Prints the answer (`content[0].text`), `usage.input_tokens + usage.output_tokens`, and specd's accounting (the
`specd` field of the answer).
"""

import json
import pathlib
import subprocess

import anthropic

status = json.loads(subprocess.run(["specd", "status", "--json"], capture_output=True, text=True, check=True).stdout)
client = anthropic.Anthropic(base_url=status["url"], api_key=pathlib.Path(status["token_file"]).read_text().strip())

message = client.messages.create(
    model="specd",
    max_tokens=64,
    system='Answer with one JSON object: {"language": ..., "reason": ...}.',
    messages=[{"role": "user", "content": "Which language is best for a tiny HTTP server?"}],
    extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"},  # forwarded by gateways, ignored by specd
)
print("text:", message.content[0].text)
print("input + output tokens:", message.usage.input_tokens + message.usage.output_tokens)
specd = message.model_extra["specd"]
print(f"specd: drafted {specd['drafted_tokens']}, accepted {specd['accepted_tokens']}, "
      f"verifier passes {specd['verifier_passes']}, cached {specd['cached_tokens']} tokens")
