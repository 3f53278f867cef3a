"""Google's google-genai SDK (Gemini API / Vertex AI) against specd: only the base URL and the key change.

    python scripts/examples/gemini_generate.py      (a running daemon: `specd start`)

Prints the answer, `prompt_token_count + candidates_token_count`, and specd's accounting (its `x-specd-*`
response headers: the SDK keeps only the fields it knows from the body).
"""

import json
import pathlib
import subprocess

from google import genai
from google.genai import types

status = json.loads(subprocess.run(["specd", "status", "--json"], capture_output=True, text=True, check=True).stdout)
client = genai.Client(api_key=pathlib.Path(status["token_file"]).read_text().strip(),
                      http_options=types.HttpOptions(base_url=status["url"]))

response = client.models.generate_content(
    model="specd",
    contents="Write a Python function that reverses a string.",
    config=types.GenerateContentConfig(
        system_instruction="You are a concise Python programmer.",
        max_output_tokens=64, temperature=0.1, top_p=0.95, candidate_count=1,
    ),
)
print("text:", response.text)
usage = response.usage_metadata
print("prompt + candidates tokens:", usage.prompt_token_count + usage.candidates_token_count)
specd = response.sdk_http_response.headers
print(f"specd: drafted {specd['x-specd-drafted-tokens']}, accepted {specd['x-specd-accepted-tokens']}, "
      f"verifier passes {specd['x-specd-verifier-passes']}, cached {specd['x-specd-cached-tokens']} tokens")
