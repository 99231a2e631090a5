"""Indirect object identification (IOI, Wang et al. 2022) prompt sets: clean prompts and their ABC corruption.

A clean prompt names two people, then repeats one of them (the subject S) as the giver, so the
next token should be the other (the indirect object IO): "When Mary and John went to the store,
John gave a drink to" -> " Mary". ABBA puts IO first ("Mary and John ... John"), BABA puts S
first ("John and Mary ... John"). The ABC corruption replaces IO, S1 and S2 by three other names
(S2 differs from S1 too), so the prompt no longer says who is the IO and the answer is lost.

Every template has the same shape, so with one-token names, places and objects every prompt is
the same number of tokens and each role sits at the same position (what position-wise patching
needs). ``ioi_prompts`` checks that against the tokenizer and says which word breaks it.

>>> prompts = ioi_prompts(model.tokenizer, n_prompts=100, seed=0)           # doctest: +SKIP
>>> prompts.clean_tokens.shape, prompts.positions                           # doctest: +SKIP
(torch.Size([100, 15]), {'name1': 2, 'name2': 4, 'S2': 10, 'END': 14})
>>> metric = logit_diff(answer=prompts.io_ids, wrong=prompts.s_ids)         # doctest: +SKIP
>>> activation_patching(model, prompts.clean_tokens, prompts.corrupt_tokens, metric,
...                     site="attn_head_out")                               # doctest: +SKIP
"""

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.data import PromptSet
from interp.errors import InterpError
from interp.mechanisms.induction import Head, mean_ablated

ORDERS = ("ABBA", "BABA")
# {A}, {B}: the first two names (ABBA: A = IO, B = S; BABA: A = S, B = IO); {S}: the subject again.
TEMPLATES = (
    "When {A} and {B} went to the {place}, {S} gave a {object} to",
    "After {A} and {B} went to the {place}, {S} gave a {object} to",
    "When {A} and {B} got to the {place}, {S} handed a {object} to",
    "While {A} and {B} were at the {place}, {S} gave a {object} to",
    "After {A} and {B} arrived at the {place}, {S} passed a {object} to",
    "Then {A} and {B} went to the {place}, {S} brought a {object} to",
)
NAMES = (
    "Mary", "John", "Alice", "Bob", "Tom", "James", "Michael", "David", "Sarah", "Emma", "Anna", "Paul", "Mark",
    "Peter", "Kate", "Lisa", "Jane", "Jack", "Sam", "Max", "Ben", "Dan", "Amy", "Rose", "Kevin", "Steve", "Laura",
    "Linda", "Susan", "Karen", "Nancy", "Helen", "Emily", "Chris", "Ryan", "Adam", "Eric", "Jason", "Brian", "George",
    "Frank", "Henry", "Carl", "Luke", "Tim", "Joe", "Bill", "Alex", "Ruth", "Grace", "Lucy", "Daniel", "Andrew",
    "Thomas", "Robert", "William", "Richard", "Charles", "Mike", "Jim", "Rachel", "Kelly",
)  # fmt: skip
PLACES = (
    "store",
    "park",
    "school",
    "house",
    "office",
    "garden",
    "kitchen",
    "restaurant",
    "hospital",
    "station",
    "beach",
    "shop",
    "library",
    "market",
)
OBJECTS = (
    "drink",
    "book",
    "ball",
    "gift",
    "pen",
    "key",
    "ring",
    "letter",
    "bag",
    "cake",
    "apple",
    "phone",
    "card",
    "hat",
    "flower",
)


@dataclass(frozen=True)
class IOIPrompts:
    """Clean IOI prompts, their ABC corruptions, the answer and subject token of each, and where each role sits.

    ``positions`` maps a role to its token position (same in every prompt): ``name1`` / ``name2``
    (the first two names: IO and S1 in ABBA, S1 and IO in BABA), ``S2`` (the repeated subject) and
    ``END`` (the last token, where the answer is read). ``records`` holds one dict per prompt
    (text, corrupt text, order, template index, io, s, the three corrupting names).
    """

    clean_tokens: Int[Tensor, "prompt pos"]
    corrupt_tokens: Int[Tensor, "prompt pos"]
    io_ids: Int[Tensor, " prompt"]
    s_ids: Int[Tensor, " prompt"]
    io_positions: Int[Tensor, " prompt"]
    s1_positions: Int[Tensor, " prompt"]
    positions: dict[str, int]
    str_tokens: tuple[str, ...]  # the first clean prompt's tokens (position labels)
    records: tuple[dict, ...]
    prepend_bos: bool

    def __post_init__(self) -> None:
        n, n_pos = self.clean_tokens.shape
        if self.corrupt_tokens.shape != (n, n_pos):
            raise InterpError(
                f"IOIPrompts.corrupt_tokens has shape {tuple(self.corrupt_tokens.shape)}, "
                f"expected {(n, n_pos)} like clean_tokens."
            )
        for name in ("io_ids", "s_ids", "io_positions", "s1_positions"):
            if tuple(getattr(self, name).shape) != (n,):
                raise InterpError(
                    f"IOIPrompts.{name} has shape {tuple(getattr(self, name).shape)}, expected ({n},): one per prompt."
                )
        if len(self.records) != n or len(self.str_tokens) != n_pos:
            raise InterpError(
                f"IOIPrompts has {len(self.records)} records and {len(self.str_tokens)} position labels for {n} "
                f"prompts of {n_pos} tokens."
            )

    def __len__(self) -> int:
        return int(self.clean_tokens.shape[0])

    @property
    def n_pos(self) -> int:
        return int(self.clean_tokens.shape[1])

    @property
    def orders(self) -> tuple[str, ...]:
        return tuple(record["order"] for record in self.records)

    @property
    def position_labels(self) -> tuple[str, ...]:
        """One label per position: the role where there is one (``name1``, ``S2``, ...), else the first prompt's
        token."""
        roles = {position: role for role, position in self.positions.items()}
        return tuple(roles.get(pos, token) for pos, token in enumerate(self.str_tokens))

    def clean(self) -> PromptSet:
        """The clean texts as a PromptSet (records carry order, io, s and the corruption)."""
        return PromptSet.from_records(
            list(self.records), text_field="text", label_field="order", source="interp.mechanisms.ioi"
        )

    def corrupt(self) -> PromptSet:
        """The ABC-corrupted texts as a PromptSet, in the same order."""
        return PromptSet.from_records(
            list(self.records), text_field="corrupt", label_field="order", source="interp.mechanisms.ioi (ABC)"
        )

    def select(self, indices: Sequence[int]) -> "IOIPrompts":
        """The prompts at ``indices``, in that order."""
        index = torch.as_tensor(list(indices), dtype=torch.long)
        return IOIPrompts(
            clean_tokens=self.clean_tokens[index], corrupt_tokens=self.corrupt_tokens[index],
            io_ids=self.io_ids[index], s_ids=self.s_ids[index],
            io_positions=self.io_positions[index], s1_positions=self.s1_positions[index],
            positions=dict(self.positions), str_tokens=self.str_tokens,
            records=tuple(self.records[i] for i in index.tolist()), prepend_bos=self.prepend_bos,
        )  # fmt: skip


def single_token_words(tokenizer, words: Sequence[str]) -> list[str]:
    """The words of ``words`` that are one token with a leading space (" Mary"), in order.

    >>> single_token_words(model.tokenizer, ["Mary", "Bartholomew"])   # doctest: +SKIP
    ['Mary']
    """
    return [word for word in words if len(_encode(tokenizer, " " + word)) == 1]


def ioi_prompts(
    tokenizer,
    n_prompts: int = 120,
    seed: int = 0,
    templates: Sequence[str] = TEMPLATES,
    names: Sequence[str] = NAMES,
    places: Sequence[str] = PLACES,
    objects: Sequence[str] = OBJECTS,
    prepend_bos: bool = True,
) -> IOIPrompts:
    """``n_prompts`` IOI prompts, half ABBA and half BABA (alternating), each with its ABC corruption.

    Names, places and objects are drawn with ``seed`` from the words that are one token with a
    leading space; a word of several tokens is skipped (names) or refused (places, objects, when
    none is left). ``prepend_bos`` puts the tokenizer's BOS first, as ``model.to_tokens`` does.

    Args:
        tokenizer: a Hugging Face tokenizer (``model.tokenizer``).
        n_prompts: at least 2 (one of each order).
        templates: strings with ``{A}``, ``{B}``, ``{S}``, ``{place}``, ``{object}``, all of the same shape.
        names: candidate names (at least 5 one-token ones: IO, S and three corrupting names).
    """
    if isinstance(n_prompts, bool) or not isinstance(n_prompts, int) or n_prompts < 2:
        raise InterpError(f"n_prompts must be an int of at least 2 (one ABBA and one BABA prompt), got {n_prompts!r}.")
    templates = _check_templates(templates)
    one_token_names = single_token_words(tokenizer, list(dict.fromkeys(names)))
    if len(one_token_names) < 5:
        raise InterpError(
            f"only {len(one_token_names)} of the {len(names)} names are one token with a leading space "
            f"({one_token_names}); an IOI prompt and its ABC corruption need 5 different one-token names: "
            "give more names (e.g. interp.mechanisms.ioi.NAMES)."
        )
    fillers = {
        "place": _one_token_or_raise(tokenizer, places, "places"),
        "object": _one_token_or_raise(tokenizer, objects, "objects"),
    }
    bos = _bos_ids(tokenizer) if prepend_bos else []
    rng = random.Random(seed)
    rows: list[tuple[list[int], list[int], dict]] = []
    for index in range(n_prompts):
        order = ORDERS[index % 2]
        io, s, *abc = rng.sample(one_token_names, 5)
        template_index = rng.randrange(len(templates))
        filler = {kind: rng.choice(words) for kind, words in fillers.items()}
        first, second = (io, s) if order == "ABBA" else (s, io)
        text = templates[template_index].format(A=first, B=second, S=s, **filler)
        corrupt_first, corrupt_second, corrupt_s = abc[0], abc[1], abc[2]  # three fresh names for A, B and S2
        corrupt = templates[template_index].format(A=corrupt_first, B=corrupt_second, S=corrupt_s, **filler)
        record = {
            "text": text,
            "corrupt": corrupt,
            "order": order,
            "template": template_index,
            "io": io,
            "s": s,
            "abc": [corrupt_first, corrupt_second, corrupt_s],
        }
        rows.append((bos + _encode(tokenizer, text), bos + _encode(tokenizer, corrupt), record))
    lengths = {len(clean) for clean, corrupt, _ in rows} | {len(corrupt) for clean, corrupt, _ in rows}
    if len(lengths) != 1:
        by_length = {len(clean): record["text"] for clean, _, record in rows}
        raise InterpError(
            "the IOI prompts tokenize to different lengths "
            f"({', '.join(f'{n} tokens: {text!r}' for n, text in sorted(by_length.items()))}); "
            "position-wise patching needs one length: give templates of one shape whose fixed words tokenize alike."
        )
    clean_tokens = torch.tensor([clean for clean, _, _ in rows], dtype=torch.long)
    corrupt_tokens = torch.tensor([corrupt for _, corrupt, _ in rows], dtype=torch.long)
    records = tuple(record for _, _, record in rows)
    io_ids = torch.tensor([_encode(tokenizer, " " + r["io"])[0] for r in records], dtype=torch.long)
    s_ids = torch.tensor([_encode(tokenizer, " " + r["s"])[0] for r in records], dtype=torch.long)
    positions = _role_positions(clean_tokens, io_ids, s_ids, records)
    io_positions = torch.tensor([positions["name1"] if r["order"] == "ABBA" else positions["name2"] for r in records])
    s1_positions = torch.tensor([positions["name2"] if r["order"] == "ABBA" else positions["name1"] for r in records])
    str_tokens = tuple(tokenizer.decode([int(t)]) for t in clean_tokens[0])
    return IOIPrompts(
        clean_tokens,
        corrupt_tokens,
        io_ids,
        s_ids,
        io_positions,
        s1_positions,
        positions,
        str_tokens,
        records,
        prepend_bos,
    )


def _check_templates(templates: Sequence[str]) -> tuple[str, ...]:
    templates = (templates,) if isinstance(templates, str) else tuple(templates)
    if not templates:
        raise InterpError("give at least one IOI template, e.g. interp.mechanisms.ioi.TEMPLATES[0].")
    for template in templates:
        fields = {"A", "B", "S", "place", "object"}
        try:
            template.format(**{field: "x" for field in fields})
        except (KeyError, IndexError, ValueError) as error:
            raise InterpError(
                f"IOI template {template!r} has an unknown or malformed field ({error}); use only {{A}}, {{B}}, "
                f"{{S}}, {{place}}, {{object}}."
            ) from None
        missing = [field for field in ("A", "B", "S") if "{" + field + "}" not in template]
        if missing:
            raise InterpError(
                f"IOI template {template!r} lacks {', '.join('{' + m + '}' for m in missing)}; "
                f"each template names A and B, then S again, e.g. {TEMPLATES[0]!r}."
            )
    return templates


def _one_token_or_raise(tokenizer, words: Sequence[str], what: str) -> list[str]:
    kept = single_token_words(tokenizer, list(words))
    if not kept:
        raise InterpError(
            f"none of the {what} {list(words)[:6]} is one token with a leading space; "
            f"give one-token {what} so all prompts have one length."
        )
    return kept


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))


def _bos_ids(tokenizer) -> list[int]:
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        raise InterpError("this tokenizer has no BOS token; pass prepend_bos=False.")
    return [int(bos)]


def _role_positions(clean_tokens: Tensor, io_ids: Tensor, s_ids: Tensor, records: Sequence[dict]) -> dict[str, int]:
    """The position of each role, checked to be the same in every prompt."""
    found: dict[str, set[int]] = {"name1": set(), "name2": set(), "S2": set()}
    for row, (tokens, io, s) in enumerate(zip(clean_tokens.tolist(), io_ids.tolist(), s_ids.tolist())):
        s_at = [pos for pos, token in enumerate(tokens) if token == s]
        io_at = [pos for pos, token in enumerate(tokens) if token == io]
        if len(s_at) != 2 or len(io_at) != 1:
            raise InterpError(
                f"prompt {records[row]['text']!r} should hold IO once and S twice as tokens; "
                "a template word may merge with a name: keep a space before each name."
            )
        first, second = sorted([io_at[0], s_at[0]])
        found["name1"].add(first)
        found["name2"].add(second)
        found["S2"].add(s_at[1])
    if any(len(where) != 1 for where in found.values()):
        raise InterpError(
            "the roles sit at different positions across prompts "
            f"({ {role: sorted(p) for role, p in found.items()} }); give templates of one shape."
        )
    positions = {role: next(iter(where)) for role, where in found.items()}
    positions["END"] = int(clean_tokens.shape[1]) - 1
    return positions


# ---- measurements ------------------------------------------------------------------------------


@torch.inference_mode()
def logit_differences(
    model,
    tokens: Int[Tensor, "prompt pos"],
    io_ids: Int[Tensor, " prompt"],
    s_ids: Int[Tensor, " prompt"],
    batch_size: int = 32,
) -> Float[Tensor, " prompt"]:
    """``logit(IO) - logit(S)`` at each prompt's last position, under whatever hooks are active (e.g.
    ``mean_ablated``)."""
    if tokens.ndim != 2 or io_ids.shape != (tokens.shape[0],) or s_ids.shape != (tokens.shape[0],):
        raise InterpError(
            f"tokens {tuple(tokens.shape)} must be [prompt, pos] with one IO and one S id per prompt "
            f"(got {tuple(io_ids.shape)}, {tuple(s_ids.shape)})."
        )
    differences = []
    for start in range(0, tokens.shape[0], batch_size):
        logits = (
            model(tokens[start : start + batch_size].to(model.cfg.device), return_type="logits")[:, -1].float().cpu()
        )
        rows = torch.arange(logits.shape[0])
        differences.append(
            logits[rows, io_ids[start : start + batch_size]] - logits[rows, s_ids[start : start + batch_size]]
        )
    return torch.cat(differences)


def ablation_removed(
    model,
    prompts: IOIPrompts,
    head_sets: Iterable[Sequence[Head]],
    means: Float[Tensor, "layer pos head d_head"],
    batch_size: int = 32,
) -> Float[Tensor, " ablation"]:
    """For each set of heads, the fraction of the mean logit difference that mean-ablating them together removes.

    ``1 - mean(ablated logit diff) / mean(clean logit diff)`` over ``prompts``; ``means`` from
    ``interp.mechanisms.induction.head_position_means`` on the corrupted (ABC) prompts, as in Wang et al.
    """
    clean = float(logit_differences(model, prompts.clean_tokens, prompts.io_ids, prompts.s_ids, batch_size).mean())
    if clean == 0:
        raise InterpError("the mean clean logit difference is 0, so there is nothing an ablation could remove.")
    removed = []
    for heads in head_sets:
        with mean_ablated(model, heads, means):
            ablated = float(
                logit_differences(model, prompts.clean_tokens, prompts.io_ids, prompts.s_ids, batch_size).mean()
            )
        removed.append(1.0 - ablated / clean)
    return torch.tensor(removed)


def rank_correlation(first: Tensor, second: Tensor) -> float:
    """Spearman's rank correlation of two same-shaped tensors (flattened; ties get their mean rank).

    >>> round(rank_correlation(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 30.0, 20.0])), 6)
    0.5
    """
    if first.shape != second.shape or first.numel() < 2:
        raise InterpError(
            f"rank correlation needs two tensors of one shape with at least 2 values, got {tuple(first.shape)} "
            f"and {tuple(second.shape)}."
        )
    ranks = [_mean_ranks(values.detach().double().flatten().cpu()) for values in (first, second)]
    centred = [r - r.mean() for r in ranks]
    return float((centred[0] * centred[1]).sum() / (centred[0].norm() * centred[1].norm()))


def _mean_ranks(values: Tensor) -> Tensor:
    order = values.argsort(stable=True)
    ranks = torch.empty_like(values)
    ranks[order] = torch.arange(values.numel(), dtype=values.dtype)
    for value in values.unique():  # ties: their mean rank
        tied = values == value
        if int(tied.sum()) > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks
