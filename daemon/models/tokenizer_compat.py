"""A drafter must speak the verifier's tokens: same id, same token text, for every id both models use."""

from __future__ import annotations


class IncompatibleModels(ValueError):
    """A drafter whose tokenizer differs from the verifier's (a token at a shared id, or the EOS id); the message names
    both models and what to use instead."""

    pass


def check_compatible(verifier_tokenizer, drafter_tokenizer, verifier_name: str = "verifier",
                     drafter_name: str = "drafter") -> None:
    """Raise IncompatibleModels unless the tokenizers agree token by token on their shared id range.

    Extra ids at the end of one vocabulary (padding, added tokens) are allowed; a different text at any shared id
    is not, nor a different end-of-sequence token.
    """
    verifier_vocab = verifier_tokenizer.get_vocab()
    drafter_vocab = drafter_tokenizer.get_vocab()
    verifier_by_id = {i: t for t, i in verifier_vocab.items()}
    drafter_by_id = {i: t for t, i in drafter_vocab.items()}
    shared = min(len(verifier_by_id), len(drafter_by_id))
    for token_id in range(shared):
        a, b = verifier_by_id.get(token_id), drafter_by_id.get(token_id)
        if a != b:
            raise IncompatibleModels(
                f"{drafter_name} cannot draft for {verifier_name}: their tokenizers differ at id {token_id} "
                f"({a!r} vs {b!r}). Speculative decoding needs a drafter with the verifier's tokenizer "
                "(same model family); use draft_strategy 'ngram' or 'layer_skip' instead."
            )
    if verifier_tokenizer.eos_token_id != drafter_tokenizer.eos_token_id:
        raise IncompatibleModels(
            f"{drafter_name} cannot draft for {verifier_name}: end-of-sequence ids differ "
            f"({drafter_tokenizer.eos_token_id} vs {verifier_tokenizer.eos_token_id})"
        )


def shared_vocab_size(verifier_model, drafter_model) -> int:
    """Logit columns both models have; ids past it are padding that no drafter may propose."""
    return min(verifier_model.get_output_embeddings().weight.shape[0],
               drafter_model.get_output_embeddings().weight.shape[0])
