"""Finding and loading models: the embedded defaults, hub ids, folders and GGUF files, and the check
that a drafter shares the verifier's tokenizer. Builds engines; imports the engine, never the API."""
