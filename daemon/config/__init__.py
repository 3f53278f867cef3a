"""Where specd keeps its files and what `settings.json` says (standard library only: every layer reads it)."""
