"""ResilienceResult follows the result contract: saved, loaded, drawn, and refused when its steps contradict its count."""

import json

import pytest

from interp.errors import InterpError
from interp.resampling import ResilienceResult

STEPS = (
    {"iteration": 0, "replacement": "Let me try another way.", "reappeared": True, "sentence": "So the answer is 42."},
    {"iteration": 1, "replacement": "Consider the base case.", "reappeared": False, "sentence": None},
)


def test_a_resilience_result_round_trips_and_draws_its_sentences(tmp_path):
    result = ResilienceResult("The answer is 42.", count=1, abandoned=True, steps=STEPS)
    result.save(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["resilience.html", "resilience.json"]
    loaded = ResilienceResult.load(tmp_path)
    assert (loaded.target, loaded.count, loaded.abandoned, [dict(step) for step in loaded.steps]) == (result.target, 1, True, list(STEPS))
    hover = " ".join(result.figure().data[0].text)
    assert "Let me try another way." in hover and "So the answer is 42." in hover and "did not come back" in hover


def test_steps_that_contradict_the_count_are_refused_on_load(tmp_path):
    ResilienceResult("The answer is 42.", count=1, abandoned=True, steps=STEPS).save(tmp_path)
    meta = json.loads((tmp_path / "resilience.json").read_text())
    meta["count"] = 2
    (tmp_path / "resilience.json").write_text(json.dumps(meta))
    with pytest.raises(InterpError, match=r"resilience.json does not hold together: ResilienceResult counts 2 reappearances but its steps record 1"):
        ResilienceResult.load(tmp_path)
