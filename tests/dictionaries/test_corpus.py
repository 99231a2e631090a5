"""A corpus of long documents cached for training: token pieces of a fixed length, up to a token budget."""

import torch

from interp.cli import main
from interp.data import PromptSet
from interp.store import ActivationStore, cache_activations

from conftest import PROMPTS

DOCUMENT = " ".join(PROMPTS * 4)


def test_documents_are_cut_into_token_pieces_up_to_a_budget(load_tiny, tmp_path):
    model = load_tiny("llama")
    ids = model.tokenizer.encode(DOCUMENT, add_special_tokens=False)
    store = cache_activations(model, PromptSet.from_texts([DOCUMENT, "a short one"]), positions="all",
                              out=tmp_path / "s", chunk_tokens=8, max_tokens=30, progress=False)  # fmt: skip
    bos = model.tokenizer.bos_token_id
    lengths = store.lengths.tolist()
    assert sum(lengths[:-1]) < 30 <= sum(lengths) and all(length <= 8 for length in lengths)  # the shortest prefix
    pieces = [store.input_ids[p, : lengths[p]].tolist() for p in range(store.n_prompts)]
    assert all(piece[0] == bos for piece in pieces)  # each piece as the model reads a prompt
    assert sum((piece[1:] for piece in pieces), []) == ids[: sum(lengths) - len(pieces)]  # the document, in order
    assert store.prompts.records[0]["document"] == 0 and store.prompts.texts[0] == model.tokenizer.decode(ids[:7])


def test_the_cache_command_takes_the_corpus_flags(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(DOCUMENT + "\n")
    argv = ["cache", "--prompts", str(corpus), "--positions", "all", "--hooks", "resid_post", "--chunk-tokens", "16",
            "--max-tokens", "40", "--out", str(tmp_path / "s")]  # fmt: skip
    assert main(argv) == 0
    store = ActivationStore.open(tmp_path / "s")
    assert int(store.lengths.sum()) >= 40 and int(store.lengths.max()) <= 16
    assert main([*argv[:-2], "--chunk-tokens", "1", "--out", str(tmp_path / "t")]) == 2
    assert "chunk_tokens must be an integer in 2.." in capsys.readouterr().err
    assert torch.isfinite(store["blocks.0.hook_resid_post"]).all()
