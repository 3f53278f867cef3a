"""Drafters: everything that proposes tokens for the verifier to check."""
