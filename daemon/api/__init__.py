"""The HTTP API: `app.py` builds the aiohttp application and holds what every door shares (security,
errors, streaming, accounting); each API door is one module (`openai.py`, `native.py`) that translates its
wire format to the engine's one request and back."""
