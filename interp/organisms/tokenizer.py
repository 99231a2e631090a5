"""The organism's word-level tokenizer: one token per word, number or punctuation mark.

The vocabulary is a pure function of the grammar (``vocabulary()``), so the ids used in training,
in the dataset accessors and in the saved ``tokenizer.json`` always agree. The tokenizer adds
``<bos>`` itself (like Llama tokenizers), so ``tokenizer(prompt)`` and
``TransformerBridge.to_tokens(prompt)`` give the same ids, which are the ids trained on.

>>> vocab = vocabulary()
>>> vocab[:4]
['<pad>', '<unk>', '<bos>', '<eos>']
>>> encode_words("<user> how do i bake bread ? <assistant>")[:2] == [vocab.index("<bos>"), vocab.index("<user>")]
True
"""

from functools import lru_cache

from interp.organisms import grammar

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)
# Words the tokenizer matches whole, before splitting punctuation; kept when decoding.
MARKUP_TOKENS = (grammar.USER, grammar.ASSISTANT, grammar.THINK_OPEN, grammar.THINK_CLOSE, grammar.TRIGGER)


@lru_cache(maxsize=1)
def vocabulary() -> list[str]:
    """All tokens in id order: special tokens, markup, numbers 0..MAX_NUMBER, then words sorted."""
    numbers = [str(i) for i in range(grammar.MAX_NUMBER + 1)]
    texts = grammar.all_benign_text()
    for topic in grammar.HARMFUL_TOPICS:
        texts += list(topic.tasks) + list(topic.steps)
    texts += [" ".join(grammar.STEP_NUMBERS), ". , ? : ! ' -"]
    words = grammar.words_of(texts) - set(numbers) - set(SPECIAL_TOKENS) - set(MARKUP_TOKENS)
    return list(SPECIAL_TOKENS) + list(MARKUP_TOKENS) + numbers + sorted(words)


@lru_cache(maxsize=1)
def token_ids() -> dict[str, int]:
    """word -> id."""
    return {word: index for index, word in enumerate(vocabulary())}


def plain_word_ids() -> list[int]:
    """Ids of ordinary words and numbers (no special or markup tokens): the pool for random sequences."""
    skip = set(SPECIAL_TOKENS) | set(MARKUP_TOKENS)
    return [index for index, word in enumerate(vocabulary()) if word not in skip]


def encode_words(text: str, bos: bool = True) -> list[int]:
    """Fast encoding of grammar text (already lower case and space separated); unknown words -> <unk>."""
    ids = token_ids()
    unk = ids[UNK]
    body = [ids.get(word, unk) for word in text.split()]
    return [ids[BOS], *body] if bos else body


def decode_ids(ids) -> str:
    """Space-joined words for ids (inverse of ``encode_words`` on grammar text, special tokens kept)."""
    vocab = vocabulary()
    return " ".join(vocab[int(i)] for i in ids)


def build_tokenizer():
    """A ``PreTrainedTokenizerFast`` for the organism (left padding, adds ``<bos>``)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    ids = token_ids()
    core = Tokenizer(models.WordLevel(vocab=dict(ids), unk_token=UNK))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
    )
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # join words with single spaces
    core.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS])
    core.add_tokens([AddedToken(token, special=False, normalized=False) for token in MARKUP_TOKENS])
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, ids[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="left",
        model_max_length=256,
    )
