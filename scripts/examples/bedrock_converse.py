"""boto3's `bedrock-runtime` Converse against specd: only the endpoint URL and the key pair change (boto3 signs
with SigV4 using the pair specd issued; `specd config bedrock` prints an AWS profile that does the same).

    python scripts/examples/bedrock_converse.py      (a running daemon: `specd start`)

Prints the answer, `usage.inputTokens + usage.cacheReadInputTokens + usage.outputTokens`, and specd's accounting
(`additionalModelResponseFields.specd`).
"""

import json
import pathlib
import subprocess

import boto3

status = json.loads(subprocess.run(["specd", "status", "--json"], capture_output=True, text=True, check=True).stdout)
keys = json.loads(pathlib.Path(status["aws_keys_file"]).read_text())
client = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=status["url"], **keys)

response = client.converse(
    modelId="specd",
    system=[{"text": "You are a concise Python programmer."}],
    messages=[{"role": "user", "content": [{"text": "Write a Python function that reverses a string."}]}],
    inferenceConfig={"maxTokens": 64, "temperature": 0.1, "topP": 0.95},
    additionalModelRequestFields={"speculativeDecoding": {"enabled": True, "maxDraftTokens": 8}},
)
print("text:", response["output"]["message"]["content"][0]["text"])
usage = response["usage"]
print("input + output tokens:", usage["inputTokens"] + usage["cacheReadInputTokens"] + usage["outputTokens"])
specd = response["additionalModelResponseFields"]["specd"]
print(f"specd: drafted {specd['drafted_tokens']}, accepted {specd['accepted_tokens']}, "
      f"verifier passes {specd['verifier_passes']}, cached {specd['cached_tokens']} tokens")
