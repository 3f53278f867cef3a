"""`specd config gemini` and `specd config bedrock`: how Google's and AWS's clients reach specd, printed for this
machine (base URL, model name, where the key is). Nothing is written: these clients read environment variables or
files the user owns.

- Gemini: google-genai takes `api_key` and `HttpOptions(base_url=...)`; the Gemini CLI reads
  `GOOGLE_GEMINI_BASE_URL` and `GEMINI_API_KEY`, needs the auth type `gemini-api-key` in ~/.gemini/settings.json
  when a base URL is set (else it exits 41 in headless runs) and `-m` (else it first asks a router model that
  specd does not serve) (../shared/notes/cli-clients.md).
- Bedrock: botocore (≥ 1.34.x, "service-specific endpoints") reads `endpoint_url` per service from a `services`
  section of ~/.aws/config, under the service's id `bedrock_runtime`; boto3 signs with SigV4 using the access key
  pair specd issued (state dir, 0600), which specd verifies.
"""

from __future__ import annotations

from pathlib import Path

from specd.daemon.api.security import load_or_create_aws_keys
from specd.daemon.config.paths import get_paths

CLIENTS = ("gemini", "bedrock")
AWS_PROFILE = "specd"


def gemini_setup(base_url: str, model: str, token_file: Path) -> str:
    """The setup text for Google's clients: a google-genai (Python) example with `base_url` and the key read from
    `token_file`, and the Gemini CLI's settings.json auth type, environment variables and `-m model`."""
    return f"""# google-genai (Python): base URL and key only
from pathlib import Path
from google import genai
from google.genai import types

client = genai.Client(api_key=Path("{token_file}").read_text().strip(),
                      http_options=types.HttpOptions(base_url="{base_url}"))
print(client.models.generate_content(model="{model}", contents="def fib(n):").text)

# Gemini CLI: once, ~/.gemini/settings.json needs the API-key auth type (a base URL alone selects one it refuses):
#   {{"security": {{"auth": {{"selectedType": "gemini-api-key"}}}}}}
export GOOGLE_GEMINI_BASE_URL="{base_url}"
export GEMINI_API_KEY="$(cat {token_file})"
gemini -m {model}
"""


def bedrock_setup(base_url: str, model: str, keys_file: Path) -> str:
    """The setup text for boto3's `bedrock-runtime` client: an ~/.aws/config profile whose service-specific endpoint
    (`services`, botocore >= 1.34) is `base_url`, the ~/.aws/credentials entry with the key pair from `keys_file`
    (created there, 0600, when missing: load_or_create_aws_keys), and a Converse example."""
    keys = load_or_create_aws_keys(keys_file)
    return f"""# ~/.aws/config: a profile whose Bedrock runtime endpoint is specd (botocore reads `services` per service)
[profile {AWS_PROFILE}]
region = us-east-1
services = {AWS_PROFILE}

[services {AWS_PROFILE}]
bedrock_runtime =
  endpoint_url = {base_url}

# ~/.aws/credentials: the key pair specd issued (from {keys_file}); boto3 signs with it, specd checks the signature
[{AWS_PROFILE}]
aws_access_key_id = {keys.access_key_id}
aws_secret_access_key = {keys.secret_access_key}

# then, e.g.:
#   AWS_PROFILE={AWS_PROFILE} python3 -c 'import boto3; r = boto3.client("bedrock-runtime").converse(modelId="{model}",
#       messages=[{{"role": "user", "content": [{{"text": "def fib(n):"}}]}}]); print(r["output"]["message"]["content"][0]["text"])'
"""


def client_setup(client: str, base_url: str, model: str, token_file: Path) -> str:
    """`specd config <client>`'s text: `gemini_setup` for "gemini", else `bedrock_setup` with this user's AWS keys file
    (`token_file` is then unused)."""
    if client == "gemini":
        return gemini_setup(base_url, model, token_file)
    return bedrock_setup(base_url, model, get_paths().aws_keys_file)
