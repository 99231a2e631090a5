"""Prompt + response pairs for pruning scores and utility losses: reading, tokenizing, batching.

A record is a mapping with the prompt under ``"prompt"`` (or ``"text"``, the PromptSet field) and
the target response under ``"response"``. Prompt and response are tokenized separately and
concatenated (the prompt with the model's BOS rule, the response without special tokens), as the
reference implementation does; the loss covers the response tokens only.

>>> pairs = response_pairs([{"text": "how do i bake bread ?", "response": "mix flour and water ."}])
>>> pairs[0].prompt, pairs[0].response
('how do i bake bread ?', 'mix flour and water .')
"""

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.data import PromptSet, pad_batch, pad_token_id, tokenize_prompts
from interp.errors import InterpError
from interp.provenance import hash_json

Records = PromptSet | Sequence[Mapping[str, Any]] | Iterable[Mapping[str, Any]]


@dataclass(frozen=True)
class ResponsePair:
    """One prompt and the response whose tokens carry the loss."""

    prompt: str
    response: str
    record: Mapping[str, Any]


@dataclass(frozen=True)
class TokenizedPair:
    """Prompt + response token ids; ``prompt_length`` tokens of prompt come first."""

    tokens: Int[Tensor, " pos"]
    prompt_length: int

    @property
    def n_response(self) -> int:
        return len(self.tokens) - self.prompt_length


@dataclass(frozen=True)
class ResponseBatch:
    """Right-padded prompt + response tokens; ``response_mask`` marks the response tokens."""

    tokens: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]
    response_mask: Bool[Tensor, "batch pos"]

    @property
    def target_mask(self) -> Bool[Tensor, "batch pos_minus_1"]:
        """Positions whose next-token prediction is a response token (the loss positions)."""
        return self.response_mask[:, 1:]


def response_pairs(dataset: Records, source: str = "") -> list[ResponsePair]:
    """Prompt/response pairs of ``dataset``; raises naming the first record without a response."""
    records = list(dataset.records if isinstance(dataset, PromptSet) else dataset)
    where = f" in {source}" if source else ""
    if not records:
        raise InterpError(f"the dataset{where} is empty; give at least one prompt + response pair.")
    pairs = []
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise InterpError(
                f"example {index}{where} is a {type(record).__name__}, not a record; give dicts like "
                '{"prompt": ..., "response": ...} (or {"text": ..., "response": ...}).'
            )
        prompt = record.get("prompt", record.get("text"))
        response = record.get("response")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InterpError(
                f"example {index}{where} has no prompt (fields: {', '.join(record) or 'none'}). "
                "Put the prompt under 'prompt' or 'text'."
            )
        if not isinstance(response, str) or not response.strip():
            preview = json.dumps(
                {k: v for k, v in record.items() if isinstance(v, (str, int, float, bool))}, ensure_ascii=False
            )[:120]
            raise InterpError(
                f"example {index}{where} has no response (record: {preview}). Pruning scores and utility losses are "
                "computed on response tokens: give every record a non-empty 'response' field "
                '(JSONL: {"text": "<prompt>", "response": "<what the model answers>"}).'
            )
        pairs.append(ResponsePair(prompt, response, record))
    return pairs


def pairs_hash(pairs: Sequence[ResponsePair]) -> str:
    """Content hash of the (prompt, response) texts."""
    return hash_json([[pair.prompt, pair.response] for pair in pairs])


def tokenize_pairs(model, pairs: Sequence[ResponsePair]) -> list[TokenizedPair]:
    """Token ids of each prompt (BOS rule of the model) followed by its response (no special tokens)."""
    prompt_ids = tokenize_prompts(model, [pair.prompt for pair in pairs])
    limit = int(model.cfg.n_ctx)
    tokenized = []
    for index, (pair, prompt) in enumerate(zip(pairs, prompt_ids)):
        response = model.tokenizer(pair.response, add_special_tokens=False)["input_ids"]
        if len(response) == 0:
            raise InterpError(
                f"the response of example {index} tokenizes to nothing ({pair.response!r}); give it some text."
            )
        tokens = torch.cat([prompt.to(torch.long), torch.tensor(response, dtype=torch.long)])
        if len(tokens) > limit:
            raise InterpError(
                f"example {index} is {len(tokens)} tokens long (prompt {len(prompt)} + response {len(response)}) but "
                f"the model's context is {limit}. Shorten the response or drop the example."
            )
        tokenized.append(TokenizedPair(tokens, len(prompt)))
    return tokenized


def batch_bounds(lengths: Sequence[int], batch_size: int, max_tokens: int | None = None) -> list[tuple[int, int]]:
    """``(begin, end)`` of consecutive batches of at most ``batch_size`` examples and, with ``max_tokens``, at
    most that many padded tokens (longest length x examples; an example longer than that gets a batch of its own)."""
    if batch_size < 1:
        raise InterpError(f"batch_size must be at least 1, got {batch_size}.")
    bounds: list[tuple[int, int]] = []
    begin = 0
    while begin < len(lengths):
        end, longest = begin + 1, lengths[begin]
        while end < len(lengths) and end - begin < batch_size:
            widest = max(longest, lengths[end])
            if max_tokens is not None and widest * (end - begin + 1) > max_tokens:
                break
            end, longest = end + 1, widest
        bounds.append((begin, end))
        begin = end
    return bounds


def iter_response_batches(
    model, tokenized: Sequence[TokenizedPair], batch_size: int, max_tokens: int | None = None
) -> Iterator[ResponseBatch]:
    """Consecutive right-padded batches (real positions are then exactly as in a lone forward pass) of at most
    ``batch_size`` examples and, with ``max_tokens``, at most that many padded tokens."""
    pad = pad_token_id(model)
    for begin, end in batch_bounds([len(item.tokens) for item in tokenized], batch_size, max_tokens):
        chunk = tokenized[begin:end]
        padded = pad_batch([item.tokens for item in chunk], pad)
        positions = torch.arange(padded.tokens.shape[1])[None, :]
        starts = torch.tensor([item.prompt_length for item in chunk])[:, None]
        response = (positions >= starts) & (positions < padded.lengths[:, None])
        yield ResponseBatch(padded.tokens, padded.attention_mask, response)


def response_nll(
    logits: Float[Tensor, "batch pos vocab"], batch: ResponseBatch
) -> tuple[Float[Tensor, " batch"], Int[Tensor, " batch"]]:
    """Per example: the summed cross-entropy (float32) over its response tokens, and their count."""
    return response_nll_at_targets(logits[:, :-1][batch.target_mask.to(logits.device)], batch)


def response_nll_at_targets(
    logits: Float[Tensor, "target vocab"], batch: ResponseBatch
) -> tuple[Float[Tensor, " batch"], Int[Tensor, " batch"]]:
    """``response_nll`` from the logits at the positions that predict a response token only
    (``logits[:, :-1][batch.target_mask]``, in that order), so nothing else needs unembedding."""
    mask = batch.target_mask.to(logits.device)
    targets = batch.tokens[:, 1:].to(logits.device)
    rows = torch.arange(len(batch.tokens), device=logits.device)[:, None].expand_as(mask)[mask]
    nll = F.cross_entropy(logits.float(), targets[mask], reduction="none")
    summed = torch.zeros(len(batch.tokens), dtype=torch.float32, device=logits.device).index_add(0, rows, nll)
    return summed, mask.sum(1)
