"""Model runners: a model's forward pass over a KV cache, one module per backend (torch today)."""
