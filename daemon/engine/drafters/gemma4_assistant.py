"""Gemma 4 multi-token-prediction assistants (`google/gemma-4-*-it-assistant`) drafting for a Gemma 4 verifier.

An assistant has no KV cache and no token embedding of its own. Every draft step of a round runs at the one
position of the pending token (the newest token, not yet in the verifier's cache) and attends, for each layer
type, to the keys and values that the verifier's last caching layer of that type holds for the positions
before it. Its input is the verifier's embedding of the previous token concatenated with a hidden state: at
the first step the verifier's final hidden state at the position before the pending token, later the
assistant's own projected output. This is transformers' `SinglePositionMultiTokenCandidateGenerator`, run on
specd's slab cache.

The verifier's hidden state comes from a forward hook on its decoder, recorded for the newest forward pass
together with the cache and positions it covered; in the engine that pass is always the prefill or the
verification of the sequence being drafted for. Using a hook rather than `output_hidden_states` keeps prefill
cheap: Gemma 4's KV-sharing layers then run only on the last prompt position.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..runners.torch_runner import ModelRunner
from ..sampling import sample
from .base import Draft, DraftContext, Drafter

ASSISTANT_CLASSES = ("Gemma4AssistantForCausalLM", "Gemma4UnifiedAssistantForCausalLM")


@dataclass
class _Recorded:
    cache: object
    end: int  # the cache length after the pass: `rows` are the hidden states of positions [end - len, end)
    rows: torch.Tensor


class HiddenStateRecorder:
    """The final hidden states (after the final norm) of the verifier's newest forward pass."""

    def __init__(self, decoder: torch.nn.Module) -> None:
        self.last: _Recorded | None = None
        self.handle = decoder.register_forward_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs, output) -> None:
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        self.last = None if cache is None else _Recorded(cache, cache.get_seq_length(), output.last_hidden_state[0])

    def at(self, cache, position: int) -> torch.Tensor | None:
        last = self.last
        if last is None or last.cache is not cache or not last.end - len(last.rows) <= position < last.end:
            return None
        return last.rows[position - last.end]


def _recorder_for(model) -> HiddenStateRecorder:
    # One hook per verifier, however many drafters are built over it.
    recorder = getattr(model, "_specd_hidden_recorder", None)
    if recorder is None:
        recorder = HiddenStateRecorder(model.get_decoder())
        model._specd_hidden_recorder = recorder
    return recorder


def _producer_layers(text_config) -> dict[str, int]:
    """For each layer type, the verifier layer whose KV the assistant reads: the last one of that type that
    computes its own KV (transformers marks it "store"; later "reuse" layers cache nothing)."""
    modes = text_config.kv_sharing_modes
    return {text_config.layer_types[i]: i for i, mode in enumerate(modes) if mode == "store"}


class Gemma4AssistantDrafter(Drafter):
    """A Gemma 4 MTP assistant drafting for its Gemma 4 verifier from the verifier's KV cache and last hidden state
    (transformers' `SinglePositionMultiTokenCandidateGenerator`, see the module docstring). Drafts greedily or samples
    (keeping q rows) until max_tokens or until its top-token confidence falls below `min_confidence` (the first token
    always goes); an empty Draft when the verifier's hidden state for the position before ctx.ids[-1] was not recorded
    (counted in `misses`). Raises ValueError at construction when `assistant` is not a Gemma 4 assistant class
    (ASSISTANT_CLASSES), the verifier is not a Gemma 4 model, or their hidden sizes or layer types do not match."""

    name = "assistant"
    drafts_after_any_ids = False  # drafts from the verifier's hidden state before ctx.ids[-1]

    def __init__(self, verifier: ModelRunner, assistant, min_confidence: float = 0.3) -> None:
        if type(assistant).__name__ not in ASSISTANT_CLASSES:
            raise ValueError(f"draft_strategy 'assistant' needs a Gemma 4 assistant model "
                             f"({' or '.join(ASSISTANT_CLASSES)}), got {type(assistant).__name__}")
        target = verifier.config
        if not hasattr(target, "kv_sharing_modes"):
            raise ValueError("a Gemma 4 assistant drafts only for a Gemma 4 verifier, "
                             f"got {type(verifier.model).__name__}")
        if assistant.config.backbone_hidden_size != target.hidden_size:
            raise ValueError(f"the assistant was trained for hidden size {assistant.config.backbone_hidden_size}, "
                             f"the verifier has {target.hidden_size}: it belongs to another Gemma 4 model")
        self.producers = _producer_layers(target)
        missing = set(assistant.config.get_text_config().layer_types) - set(self.producers)
        if missing:
            raise ValueError(f"the verifier caches no KV for the assistant's layer types {sorted(missing)}")
        self.verifier = verifier
        self.assistant = assistant.eval()
        self.embed = verifier.model.get_input_embeddings()
        self.recorder = _recorder_for(verifier.model)
        self.min_confidence = min_confidence
        self.misses = 0  # rounds with no verifier hidden state for the position drafted from

    def propose(self, ctx: DraftContext, state) -> Draft:
        cache = ctx.slot.cache
        cached = len(ctx.ids) - 1
        hidden = self.recorder.at(cache, cached - 1)
        if hidden is None or cache.get_seq_length() != cached:
            self.misses += 1
            return Draft()
        with torch.inference_mode():
            return self._draft(ctx, self._shared_kv(cache, cached), hidden.view(1, 1, -1))

    def _shared_kv(self, cache, cached: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        # Sliding layers get the full history too: the assistant's own mask picks the window from its end.
        return {layer_type: (cache.layers[i].keys[:, :, :cached], cache.layers[i].values[:, :, :cached])
                for layer_type, i in self.producers.items()}

    def _draft(self, ctx: DraftContext, kv, hidden: torch.Tensor) -> Draft:
        device = self.verifier.device
        position = torch.tensor([[len(ctx.ids) - 1]], device=device)
        token = ctx.ids[-1]
        tokens: list[int] = []
        rows: list[torch.Tensor] = []
        while len(tokens) < ctx.max_tokens:
            embedding = self.embed(torch.tensor([[token]], device=device))
            out = self.assistant(inputs_embeds=torch.cat([embedding, hidden], dim=-1), position_ids=position,
                                 shared_kv_states=kv, use_cache=False)
            logits = out.logits[0, -1].float()[: self.verifier.vocab_limit]
            if ctx.sampling.greedy:
                confidence, best = torch.softmax(logits, dim=-1).max(dim=-1)
                token = int(best)
            else:
                probs = ctx.sampling.probs(logits)
                token = sample(probs, ctx.generator)
                confidence = probs.max()
            if tokens and float(confidence) < self.min_confidence:
                break
            if not ctx.sampling.greedy:
                rows.append(probs)
            tokens.append(token)
            hidden = out.last_hidden_state
        return Draft(tokens, torch.stack(rows) if rows else None)

    def memory_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.assistant.parameters())

    def describe(self) -> str:
        return f"assistant:{type(self.assistant).__name__}"
