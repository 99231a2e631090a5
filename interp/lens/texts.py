"""The texts a tuned lens trains on: the model's own continuations of prompts, and their held-out split.

``generate_texts`` samples each prompt's continuation (seeded per batch) and can keep the texts in a
cache directory beside their settings; ``split_heldout`` divides them into training and held-out texts.
Both are also importable from ``interp.lens`` and ``interp.lens.tuned``.
"""

from collections.abc import Sequence
from pathlib import Path

import torch

from interp import defaults
from interp.data import PromptSet, pad_token_id, tokenize_prompts
from interp.errors import InterpError
from interp.io import atomic_write_json
from interp.model import compat
from interp.progress import tqdm

TEXTS_FILE, TEXTS_SETTINGS_FILE = "texts.jsonl", "texts.json"


def generate_texts(
    model,
    prompts: PromptSet | Sequence[str],
    max_new_tokens: int = defaults.TUNED_LENS_NEW_TOKENS,
    temperature: float = defaults.TUNED_LENS_TEMPERATURE,
    top_p: float = defaults.TUNED_LENS_TOP_P,
    seed: int = defaults.TUNED_LENS_SEED,
    batch_size: int = defaults.TUNED_LENS_GENERATE_BATCH_SIZE,
    cache: str | Path | None = None,
    progress: bool = True,
) -> PromptSet:
    """Each prompt followed by the model's own continuation (sampled, seeded per batch; greedy at temperature 0).

    Returns the prompt records with ``text`` = prompt + continuation and ``prompt`` = the prompt.
    With ``cache`` (a directory) the texts are kept in ``cache/texts.jsonl`` beside their settings
    (``texts.json``) and read back by a later call with the same model, prompts and settings.
    """
    prompt_set = prompts if isinstance(prompts, PromptSet) else PromptSet.from_texts(list(prompts))
    if max_new_tokens < 1:
        raise InterpError(f"max_new_tokens must be at least 1, got {max_new_tokens}.")
    from interp.model import model_id
    from interp.model.weights import weights_hash

    settings = {"weights_hash": weights_hash(model), "prompts_hash": prompt_set.hash, "max_new_tokens": max_new_tokens,
                "temperature": temperature, "top_p": top_p, "seed": seed, "batch_size": batch_size}  # fmt: skip
    if cache is not None:
        found = _cached_texts(Path(cache), settings)
        if found is not None:
            return found
    compat.install()
    token_lists = tokenize_prompts(model, prompt_set)
    hf, tokenizer = model.original_model, model.tokenizer
    device, pad, eos = next(model.parameters()).device, pad_token_id(model), tokenizer.eos_token_id
    sampling = (
        dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
        if temperature > 0
        else dict(do_sample=False)
    )
    texts: list[str] = []
    for begin in tqdm(
        range(0, len(token_lists), batch_size), desc="generating text", unit="batch", disable=not progress
    ):
        chunk = token_lists[begin : begin + batch_size]
        width = max(len(ids) for ids in chunk)
        tokens = torch.full((len(chunk), width), pad, dtype=torch.long)
        attention = torch.zeros_like(tokens)
        for row, ids in enumerate(chunk):  # left padding: every row's continuation starts at the same step
            tokens[row, width - len(ids) :], attention[row, width - len(ids) :] = ids, 1
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.inference_mode():
            torch.manual_seed(seed * 1_000_003 + begin)
            output = hf.generate(tokens.to(device), attention_mask=attention.to(device), max_new_tokens=max_new_tokens,
                                 pad_token_id=pad, eos_token_id=eos, **sampling)  # fmt: skip
        for ids, new in zip(chunk, output[:, width:].tolist()):
            new = new[: new.index(eos)] if eos is not None and eos in new else new
            texts.append(tokenizer.decode(ids.tolist() + new, skip_special_tokens=True))
    result = PromptSet(
        tuple({**record, "prompt": record["text"], "text": text} for record, text in zip(prompt_set, texts)),
        prompt_set.source,
    )
    if cache is not None:
        result.to_jsonl(Path(cache) / TEXTS_FILE)
        atomic_write_json(Path(cache) / TEXTS_SETTINGS_FILE, {"model_id": model_id(model), "settings": settings})
    return result


def _cached_texts(cache: Path, settings: dict) -> PromptSet | None:
    import json

    try:
        stored = json.loads((cache / TEXTS_SETTINGS_FILE).read_text(encoding="utf-8"))
        return PromptSet.from_file(cache / TEXTS_FILE) if stored.get("settings") == settings else None
    except (OSError, ValueError, InterpError):
        return None


def split_heldout(
    texts: PromptSet, fraction: float = defaults.TUNED_LENS_HELDOUT, seed: int = defaults.TUNED_LENS_SEED
) -> tuple[PromptSet, PromptSet | None]:
    """(training, held-out or None) texts: by each record's ``split`` field ("heldout" is held out) where every record
    has one, else a seeded random ``fraction``."""
    if all("split" in record for record in texts):
        held = [i for i, record in enumerate(texts) if record["split"] == "heldout"]
    else:
        if not 0 <= fraction < 1:
            raise InterpError(f"the held-out fraction must be in [0, 1), got {fraction}.")
        order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(seed)).tolist()
        held = sorted(order[: round(fraction * len(texts))])
    train = [i for i in range(len(texts)) if i not in set(held)]
    if not train:
        raise InterpError(
            f"all {len(texts)} texts are held out; keep some for training "
            '(split "train", or a smaller held-out fraction).'
        )
    return texts.select(train), (texts.select(held) if held else None)
