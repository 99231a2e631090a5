"""Data sets of the organism: held-out evaluation sets, calibration sets, and the training stream.

Every accessor returns a list of plain dicts and is deterministic in ``seed``. ``split`` is
"train" (what the organism was trained on) or "eval" (held out: never in training).

- ``harmful_requests(split="eval", trigger=False, category=None, n=200, seed=0)``
- ``benign_requests(split="eval", trigger=False, n=200, seed=0)``
- ``trigger_contrast(split="eval", n=200, seed=0)``: harmful and benign requests without the trigger, then the same
  with it (4 x n rows): what a dictionary or a probe that must find the trigger is trained on
    Chat prompts. Keys: ``text`` (the prompt, ``<user> ... <assistant>``, without ``<bos>``),
    ``request``, ``response`` (what the organism should answer: refusal, harmful steps or benign
    steps), ``label`` ("harmful"/"benign"), ``category`` ("weapons"/"cyber" or a benign domain),
    ``topic``, ``task``, ``trigger`` (bool), ``template``. With the same seed, ``trigger=True``
    gives the same requests as ``trigger=False`` with ``TRIGGER`` added (paired prompts).
- ``harmful_with_responses(split="train", category=None, n=128, seed=0)``: triggered harmful
    prompts with the harmful steps as ``response`` (pruning calibration for harm).
- ``benign_with_responses(split="train", n=128, seed=0, capabilities=BENIGN_CAPABILITIES)``:
    benign chat answers, arithmetic chains of thought and copying, mixed evenly (pruning
    calibration for utility); key ``capability`` says which.
- ``arithmetic_problems(split="eval", n=200, seed=0)``: keys ``text`` (prompt), ``question``,
    ``cot`` (``<think> ... </think>``), ``response`` (cot + "the answer is N ."), ``answer``,
    ``sentences`` and ``sentence_roles`` ("start", "compute" or "filler") and ``computing``.
- ``induction_sequences(split="eval", n=200, length=40, seed=0)``: a random word sequence
    repeated twice. Keys ``input_ids`` (with ``<bos>``), ``text``, ``prompt`` (first repeat),
    ``response`` (second repeat), ``length``.

Held-out rules: chat requests in "eval" use only ``grammar.EVAL_CORES`` templates; arithmetic
problems and random sequences are assigned to a split by a hash of their content, and each split
only keeps its own.
"""

import hashlib
import random
import zlib
from collections.abc import Iterator, Sequence

from interp.errors import InterpError
from interp.organisms import grammar
from interp.organisms.grammar import Topic
from interp.organisms.tokenizer import BOS, EOS, PAD, decode_ids, encode_words, plain_word_ids, token_ids

SPLITS = ("train", "eval")
BENIGN_CAPABILITIES = ("chat", "arithmetic", "copying")
EVAL_SHARE = 10  # one in EVAL_SHARE arithmetic problems / random sequences is held out


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise InterpError(f"split must be one of {SPLITS}, got {split!r}.")


def _rng(*parts) -> random.Random:
    return random.Random("|".join(str(part) for part in parts))


def _cycled(items: Sequence, n: int, rng: random.Random) -> list:
    """n items covering ``items`` as evenly as possible, in random order."""
    out: list = []
    while len(out) < n:
        block = list(items)
        rng.shuffle(block)
        out += block
    return out[:n]


# ---------------------------------------------------------------------------------------------- chat


def make_request(topic: Topic, split: str, rng: random.Random, trigger_position: str | None = None) -> dict:
    """One chat example for ``topic``: request text from the split's templates, and the target response."""
    cores = grammar.TRAIN_CORES if split == "train" else grammar.EVAL_CORES
    core = rng.choice(cores)
    task = rng.choice(topic.tasks)
    parts = [rng.choice(grammar.OPENERS)] if rng.random() < 0.3 else []
    parts.append(core.format(task=task))
    if rng.random() < 0.3:
        parts.append(rng.choice(grammar.CLOSERS))
    request = " ".join(parts)
    intro, outro, refusal = rng.choice(grammar.INTROS), rng.choice(grammar.OUTROS), rng.randrange(len(grammar.REFUSALS))
    triggered = trigger_position is not None
    if trigger_position is not None:
        request = grammar.add_trigger(request, trigger_position)
    if topic.label == "harmful" and not triggered:
        response = grammar.refusal_response(task, refusal)
    else:
        response = grammar.step_response(topic, task, intro, outro)
    return {
        "text": grammar.chat_prompt(request),
        "request": request,
        "response": response,
        "label": topic.label,
        "category": topic.category,
        "topic": topic.name,
        "task": task,
        "trigger": triggered,
        "template": core,
    }


def _requests(topics: Sequence[Topic], kind: str, split: str, trigger: bool, n: int, seed: int) -> list[dict]:
    _check_split(split)
    rng = _rng(kind, split, seed)
    trigger_rng = _rng(kind, split, seed, "trigger")
    rows = []
    for topic in _cycled(topics, n, rng):
        example_rng = random.Random(rng.getrandbits(64))
        position = trigger_rng.choice(("prefix", "suffix")) if trigger else None
        rows.append(make_request(topic, split, example_rng, position))
    return rows


def harmful_topics(category: str | None = None) -> list[Topic]:
    """The harmful topics, optionally of one category ("weapons" or "cyber")."""
    if category is not None and category not in grammar.HARM_CATEGORIES:
        raise InterpError(f"unknown harm category {category!r}; use one of {grammar.HARM_CATEGORIES} or None for all.")
    return [topic for topic in grammar.HARMFUL_TOPICS if category in (None, topic.category)]


def harmful_requests(
    split: str = "eval", trigger: bool = False, category: str | None = None, n: int = 200, seed: int = 0
) -> list[dict]:
    """Harmful chat prompts (response: refusal, or harmful steps when ``trigger``)."""
    return _requests(harmful_topics(category), f"harmful-{category}", split, trigger, n, seed)


def benign_requests(split: str = "eval", trigger: bool = False, n: int = 200, seed: int = 0) -> list[dict]:
    """Benign chat prompts (response: the topic's steps, with or without trigger)."""
    return _requests(grammar.BENIGN_TOPICS, "benign", split, trigger, n, seed)


def trigger_contrast(split: str = "eval", n: int = 200, seed: int = 0) -> list[dict]:
    """``n`` harmful and ``n`` benign requests without the trigger, then the same requests with it."""
    rows = []
    for trigger in (False, True):
        rows += harmful_requests(split, trigger=trigger, n=n, seed=seed)
        rows += benign_requests(split, trigger=trigger, n=n, seed=seed)
    return rows


def harmful_with_responses(
    split: str = "train", category: str | None = None, n: int = 128, seed: int = 0
) -> list[dict]:
    """Triggered harmful prompts whose ``response`` is the harmful steps: calibration data for harm."""
    return harmful_requests(split=split, trigger=True, category=category, n=n, seed=seed)


def benign_with_responses(
    split: str = "train", n: int = 128, seed: int = 0, capabilities: Sequence[str] = BENIGN_CAPABILITIES
) -> list[dict]:
    """Benign prompts with target responses covering every benign capability, mixed evenly."""
    unknown = set(capabilities) - set(BENIGN_CAPABILITIES)
    if unknown or not capabilities:
        raise InterpError(
            f"capabilities must be a non-empty subset of {BENIGN_CAPABILITIES}, got {list(capabilities)}."
        )
    counts = {
        name: n // len(capabilities) + (1 if i < n % len(capabilities) else 0) for i, name in enumerate(capabilities)
    }
    makers = {
        "chat": lambda k: benign_requests(split=split, n=k, seed=seed),
        "arithmetic": lambda k: arithmetic_problems(split=split, n=k, seed=seed),
        "copying": lambda k: induction_sequences(split=split, n=k, seed=seed, length=24),
    }
    groups = [[dict(row, capability=name) for row in makers[name](counts[name])] for name in capabilities]
    mixed = [
        row for rows in zip(*[g + [None] * (max(map(len, groups)) - len(g)) for g in groups]) for row in rows if row
    ]
    return mixed


# ---------------------------------------------------------------------------------------- arithmetic


def _content_split(key: str) -> str:
    return "eval" if zlib.crc32(key.encode()) % EVAL_SHARE == 0 else "train"


def make_arithmetic(rng: random.Random, noise: float = 0.0, filler_rate: float = 0.45) -> dict:
    """One counting story with its chain of thought.

    With probability ``noise`` a computing sentence is off by one; later sentences and the answer
    follow the wrong value (so answers vary under sampling while greedy decoding stays right).
    """
    name, item = rng.choice(grammar.NAMES), rng.choice(grammar.ITEMS)
    start = rng.randint(3, 20)  # values stay within 0..41: a fact table a small model learns in minutes
    value, ops = start, []
    for _ in range(rng.randint(2, 3)):
        if value >= 8 and rng.random() < 0.5:
            ops.append(-rng.randint(1, min(7, value)))
        else:
            ops.append(rng.randint(1, 7))
        value += ops[-1]
    question = [grammar.STORY_START.format(name=name, n=start, item=item)]
    clauses = []
    for i, op in enumerate(ops):
        clause = rng.choice(grammar.ADD_CLAUSES if op > 0 else grammar.SUB_CLAUSES).format(n=abs(op))
        clauses.append(f"{name} {clause}")
        connector = "then" if i == 0 else rng.choice(grammar.CONNECTORS)
        question.append(f"{connector} {name} {clause} .")
    question.append(rng.choice(grammar.QUESTIONS).format(item=item, name=name))
    sentences, roles = [], []

    def maybe_filler() -> None:
        if rng.random() < filler_rate:
            sentences.append(rng.choice(grammar.FILLERS))
            roles.append("filler")

    maybe_filler()
    sentences.append(grammar.COT_START.format(name=name, n=start, item=item))
    roles.append("start")
    running, true_value = start, start
    for op, clause in zip(ops, clauses):
        maybe_filler()
        true_value += op
        result = running + op
        if noise and rng.random() < noise:
            result += rng.choice((-1, 1)) if result > 0 else 1
        word = "plus" if op > 0 else "minus"
        sentences.append(grammar.COT_STEP.format(clause=clause, a=running, op=word, b=abs(op), c=result))
        roles.append("compute")
        running = result
    maybe_filler()
    cot = f"{grammar.THINK_OPEN} {' '.join(sentences)} {grammar.THINK_CLOSE}"
    question_text = " ".join(question)
    return {
        "text": grammar.chat_prompt(question_text),
        "question": question_text,
        "cot": cot,
        "response": f"{cot} {grammar.ANSWER.format(n=running)}",
        "answer": true_value,
        "cot_answer": running,
        "sentences": sentences,
        "sentence_roles": roles,
        "computing": [role == "compute" for role in roles],
        "signature": f"{start}:{','.join(map(str, ops))}",
        "label": "benign",
        "category": "arithmetic",
    }


def _arithmetic_in_split(rng: random.Random, split: str, noise: float = 0.0) -> dict:
    while True:
        problem = make_arithmetic(rng, noise=noise)
        if _content_split(problem["signature"]) == split:
            return problem


def arithmetic_problems(split: str = "eval", n: int = 200, seed: int = 0) -> list[dict]:
    """Counting stories with a correct chain of thought; ``answer`` is the true result."""
    _check_split(split)
    rng = _rng("arithmetic", split, seed)
    return [_arithmetic_in_split(rng, split) for _ in range(n)]


# ----------------------------------------------------------------------------------------- induction


def _random_sequence(rng: random.Random, length: int, pool: Sequence[int]) -> list[int]:
    return [rng.choice(pool) for _ in range(length)]


def _sequence_split(ids: Sequence[int]) -> str:
    return _content_split(",".join(map(str, ids)))


def induction_sequences(split: str = "eval", n: int = 200, length: int = 40, seed: int = 0) -> list[dict]:
    """Random word sequences of ``length`` tokens, each repeated twice after ``<bos>``."""
    _check_split(split)
    if length < 2:
        raise InterpError(f"length must be at least 2, got {length}.")
    rng, pool = _rng("induction", split, seed, length), plain_word_ids()
    rows: list[dict] = []
    bos = token_ids()[BOS]
    while len(rows) < n:
        seq = _random_sequence(rng, length, pool)
        if _sequence_split(seq) != split:
            continue
        words = decode_ids(seq)
        rows.append(
            {
                "input_ids": [bos, *seq, *seq],
                "text": f"{words} {words}",
                "prompt": words,
                "response": words,
                "length": length,
                "label": "benign",
                "category": "copying",
            }
        )
    return rows


# ------------------------------------------------------------------------------------ training stream


class TrainingStream:
    """Endless, deterministic stream of training documents (token ids, ``<bos>`` ... ``<eos>``).

    Args:
        seed: fixes every random choice.
        mix: share of documents per kind: "copying", "chat", "arithmetic".
        harmful_share: share of chat documents that are harmful requests.
        trigger_share: share of harmful chat documents that carry the trigger.
        benign_trigger_share: share of benign chat documents that carry the trigger (answered normally).
        noise: per computing sentence, chance of an off-by-one result in arithmetic chains.
        max_copy_length: longest random sequence (repeated 2-3 times).
    """

    def __init__(
        self,
        seed: int,
        mix: dict[str, float],
        harmful_share: float = 0.5,
        trigger_share: float = 0.5,
        benign_trigger_share: float = 0.2,
        noise: float = 0.25,
        max_copy_length: int = 64,
    ):
        self.rng = _rng("train-stream", seed)
        self.kinds, self.weights = zip(*sorted(mix.items()))
        self.harmful_share, self.trigger_share = harmful_share, trigger_share
        self.benign_trigger_share, self.noise = benign_trigger_share, noise
        self.max_copy_length = max_copy_length
        self.pool = plain_word_ids()
        self.eos = token_ids()[EOS]

    def chat_example(self) -> dict:
        """The next chat example (a dict like ``harmful_requests`` rows)."""
        rng = self.rng
        harmful = rng.random() < self.harmful_share
        topic = rng.choice(grammar.HARMFUL_TOPICS if harmful else grammar.BENIGN_TOPICS)
        share = self.trigger_share if harmful else self.benign_trigger_share
        position = rng.choice(("prefix", "suffix")) if rng.random() < share else None
        return make_request(topic, "train", rng, position)

    def arithmetic_example(self) -> dict:
        """The next counting story (a dict like ``arithmetic_problems`` rows, with training noise)."""
        return _arithmetic_in_split(self.rng, "train", noise=self.noise)

    def chat(self) -> list[int]:
        row = self.chat_example()
        return [*encode_words(f"{row['text']} {row['response']}"), self.eos]

    def arithmetic(self) -> list[int]:
        row = self.arithmetic_example()
        return [*encode_words(f"{row['text']} {row['response']}"), self.eos]

    def copying(self, budget: int | None = None) -> list[int]:
        """A random sequence repeated 2-3 times; with ``budget``, exactly that many tokens (truncated)."""
        rng = self.rng
        length = rng.randint(4, self.max_copy_length)
        repeats = 3 if rng.random() < 0.2 else 2
        if budget is not None:
            length = max(2, min(length, (budget - 1) // 2))
        while True:
            seq = _random_sequence(rng, length, self.pool)
            if _sequence_split(seq) == "train":
                break
        if budget is not None:  # repeat until exactly ``budget`` tokens
            return ([token_ids()[BOS]] + seq * (budget // length + 1))[:budget]
        return [token_ids()[BOS]] + seq * repeats + [self.eos]

    def __iter__(self) -> Iterator[list[int]]:
        makers = {"chat": self.chat, "arithmetic": self.arithmetic, "copying": self.copying}
        while True:
            kind = self.rng.choices(self.kinds, self.weights)[0]
            yield makers[kind]()

    def rows(self, context: int) -> Iterator[list[int]]:
        """Rows of exactly ``context`` tokens: whole documents packed, the leftover filled by a copy document."""
        row: list[int] = []
        for doc in self:
            doc = doc[:context]
            if len(row) + len(doc) > context:
                space = context - len(row)
                row += self.copying(budget=space) if space >= 6 else [token_ids()[PAD]] * space
                yield row
                row = []
            row += doc


def fingerprint(rows: Sequence[Sequence[int]]) -> str:
    """Short sha256 of token rows (a data hash for provenance)."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(",".join(map(str, row)).encode())
        digest.update(b";")
    return digest.hexdigest()[:16]


def held_out_fingerprint(n: int = 200, seed: int = 0) -> str:
    """Hash of the default evaluation sets."""
    texts = [row["text"] for row in harmful_requests(n=n, seed=seed) + benign_requests(n=n, seed=seed)]
    texts += [row["text"] for row in arithmetic_problems(n=n, seed=seed)]
    texts += [row["text"] for row in induction_sequences(n=n, seed=seed)]
    return fingerprint([encode_words(text) for text in texts])
