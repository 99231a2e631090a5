"""``analysis = "cache"``: cache activations of a prompt set to a store in OUT/store."""

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from interp import defaults
from interp.experiments.base import DatasetSpec, Experiment, doc, positions_argument


@dataclass(frozen=True, kw_only=True)
class CacheConfig(Experiment):
    """Cache activations of a prompt set to a store in OUT/store (resumes its finished shards)."""

    ANALYSIS: ClassVar[str] = "cache"
    name: str = doc("experiment name, shown in figures and logs", default="cache")
    prompts: DatasetSpec = doc("the prompts")
    hooks: tuple[str, ...] = doc(
        "hook names or shorthands: resid_pre, resid_mid, resid_post, attn_out, mlp_out, z, q, k, v, pattern, embed, "
        "...",
        default=("resid_post",),
    )
    positions: str | tuple[int, ...] = doc(
        "'last', 'all', or positions, e.g. 0 and -1 (negative counts from each prompt's end)", default="last"
    )
    batch_size: int = doc("prompts per forward pass", default=defaults.CACHE_BATCH_SIZE)
    shard_size: int | None = doc("prompts per shard file (default: 8 batches)", default=None)
    store_dtype: str | None = doc("storage dtype: float32, bfloat16 or float16 (default: the model's)", default=None)
    chat_template: bool = doc("wrap each prompt as a user turn with the tokenizer's chat template", default=False)
    chunk_tokens: int | None = doc(
        "cut each prompt (a document) into pieces of this many tokens, each piece cached as a prompt", default=None
    )
    max_tokens: int | None = doc("cache the first prompts whose tokens reach this many (a token budget)", default=None)

    def run(self, out: Path, model=None, progress: bool = True):
        from interp.directories import claim_directory
        from interp.io import atomic_write_figure
        from interp.mechanisms.norms import has_layer_sites, site_norms
        from interp.store import cache_activations

        claim_directory(out, self.to_dict())
        model = self.load_model(model)
        store = cache_activations(
            model,
            self.prompts.prompts(model, self.chat_template),
            hooks=list(self.hooks),
            positions=positions_argument(self.positions),
            out=out / "store",
            batch_size=self.batch_size,
            dtype=self.store_dtype,
            shard_size=self.shard_size,
            resume=True,
            progress=progress,
            chunk_tokens=self.chunk_tokens,
            max_tokens=self.max_tokens,
        )
        if has_layer_sites(store):  # an embedding-only store has no per-layer overview
            atomic_write_figure(out / "overview.html", site_norms(store).figure())
        return store
