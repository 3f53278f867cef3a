"""The speculative-decoding engine: no I/O, no HTTP.

`loop.py` holds the loop (draft, verify, accept, stop); `drafters/` the draft sources behind one interface;
`runners/` the model backends that run the verifier's forward passes; the other modules are the loop's
parts (KV cache, sampling and verification, stops, FIM prompts, request and result types).
"""
