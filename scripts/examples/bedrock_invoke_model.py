"""boto3's `bedrock-runtime` InvokeModel against specd: only the endpoint URL and the key pair change (boto3 signs
with SigV4 using the pair specd issued; `specd config bedrock` prints an AWS profile that does the same).

    python scripts/examples/bedrock_invoke_model.py      (a running daemon: `specd start`)

Prints the answer's `text` and specd's accounting (the answer's `specd` field).
"""

import json
import pathlib
import subprocess

import boto3

status = json.loads(subprocess.run(["specd", "status", "--json"], capture_output=True, text=True, check=True).stdout)
keys = json.loads(pathlib.Path(status["aws_keys_file"]).read_text())
client = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=status["url"], **keys)

body = {"prompt": "def reverse(text):\n    ", "max_tokens": 64, "temperature": 0.1, "top_p": 0.95,
        "speculativeDecoding": {"enabled": True, "maxDraftTokens": 8}}
answer = json.loads(client.invoke_model(modelId="specd", body=json.dumps(body))["body"].read())
print("text:", answer["text"])
specd = answer["specd"]
print(f"specd: drafted {specd['drafted_tokens']}, accepted {specd['accepted_tokens']}, "
      f"verifier passes {specd['verifier_passes']}, max draft tokens {specd['speculative']['max_draft_tokens']}")
