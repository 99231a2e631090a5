"""The refusal (harm) direction of Arditi et al. 2024, *Refusal in LMs is mediated by a single direction*.

Candidate directions are differences of means of harmful and benign instructions' residual
streams (``resid_pre``) at every layer and at every post-instruction position of the chat
template; each is scored by what ablating it does on harmful prompts (refusal score), what
adding it does on benign ones, and the KL that ablating it costs on benign ones; the best is
chosen under filters (see ``interp.directions.find``).

>>> result = find_directions(model, harmful, benign)                       # doctest: +SKIP
>>> result.figure().show(); result.save("runs/refusal_direction")          # doctest: +SKIP
>>> with ablated(model, result.direction):                                 # doctest: +SKIP
...     logits = model(tokens)
>>> save_orthogonalized(model, result.direction, "/tmp/smollm2-ortho")     # doctest: +SKIP
"""

from interp.directions.find import (
    REFUSAL_STARTS,
    find_directions,
    merge_scores,
    refusal_scores,
    refusal_token_ids,
    split_by_label,
)
from interp.directions.interventions import (
    OrthogonalizedWeights,
    ablated,
    added,
    describe_saved,
    orthogonalize,
    orthogonalized,
    save_orthogonalized,
)  # fmt: skip
from interp.directions.prompts import chat_format, post_instruction_tokens, read_instructions, split_instructions
from interp.directions.result import DirectionResult, RefusalDirection

__all__ = [
    "REFUSAL_STARTS", "DirectionResult", "OrthogonalizedWeights", "RefusalDirection", "ablated", "added", "chat_format",
    "describe_saved", "find_directions", "merge_scores", "orthogonalize", "orthogonalized", "post_instruction_tokens",
    "read_instructions", "refusal_scores", "refusal_token_ids", "save_orthogonalized", "split_by_label",
    "split_instructions",
]  # fmt: skip
