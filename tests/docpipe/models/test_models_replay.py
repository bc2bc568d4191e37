import json

import pytest
from PIL import Image

from docpipe.models.base import VLMRequest, family_names, get_family
from docpipe.models.replay import RecordingClient, ReplayClient, ReplayMissError


def _req(color=(255, 255, 255), prompt="\nText Recognition:", size=(56, 28)):
    return VLMRequest(Image.new("RGB", size, color), prompt, {"max_tokens": 8}, "text")


class _Echo:
    def __init__(self):
        self.calls = 0

    def generate(self, requests):
        self.calls += 1
        return [f"answer {r.image.getpixel((0, 0))[0]}" for r in requests]


def test_key_depends_on_pixels_size_and_prompt_only():
    a = _req()
    assert a.key == _req().key and len(a.key) == 64
    assert a.key != _req(color=(0, 0, 0)).key
    assert a.key != _req(prompt="\nTable Recognition:").key
    assert a.key != _req(size=(28, 56)).key  # same bytes, other shape
    b = VLMRequest(a.image, a.prompt, {"max_tokens": 99}, "text")
    assert b.key == a.key  # sampling is not part of the content


def test_record_then_replay(tmp_path):
    reqs = [_req((1, 1, 1)), _req((2, 2, 2))]
    inner = _Echo()
    assert RecordingClient(inner, tmp_path).generate(reqs) == ["answer 1", "answer 2"]
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted(f"{r.key}.json" for r in reqs)  # no temp files left behind
    record = json.loads((tmp_path / f"{reqs[0].key}.json").read_text())
    assert record["kind"] == "text" and record["image_size"] == [56, 28]
    assert ReplayClient(tmp_path).generate(list(reversed(reqs))) == ["answer 2", "answer 1"]


def test_miss_lists_every_missing_key_and_answers_nothing(tmp_path):
    present, missing1, missing2 = _req((1, 1, 1)), _req((2, 2, 2)), _req((3, 3, 3), "\nFormula Recognition:")
    RecordingClient(_Echo(), tmp_path).generate([present])
    with pytest.raises(ReplayMissError) as err:
        ReplayClient(tmp_path).generate([present, missing1, missing2])
    assert err.value.missing_keys == [missing1.key, missing2.key]
    msg = str(err.value)
    assert str(tmp_path) in msg and missing1.key in msg and "Formula Recognition" in msg
    assert present.key not in msg


def test_replay_folder_must_exist_and_records_must_be_valid(tmp_path):
    with pytest.raises(FileNotFoundError):
        ReplayClient(tmp_path / "nope")
    req = _req()
    (tmp_path / f"{req.key}.json").write_text("{not json")
    with pytest.raises(ValueError, match=req.key):
        ReplayClient(tmp_path).generate([req])


def test_registry():
    assert "mineru25" in family_names()
    assert get_family("mineru25").name == "mineru25"
    with pytest.raises(ValueError, match="unknown model family"):
        get_family("nope")
    with pytest.raises(ValueError, match="kind"):
        VLMRequest(Image.new("RGB", (1, 1)), "", {}, "chart")
