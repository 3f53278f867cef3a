"""The language server: editors talk LSP to it, it talks HTTP to the daemon."""
