"""Bad input: every invalid sample is named, or skipped and counted under on_invalid: skip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from coordexp_train.data.dataset import DetectionDataset
from coordexp_train.data.encode import SampleEncoder
from coordexp_train.data.prompts import PromptSpec
from coordexp_train.data.samples import InvalidReport, SampleError
from coordexp_train.model import LoadedModel


def _encoder(loaded: LoadedModel, max_length: int = 4096) -> SampleEncoder:
    return SampleEncoder(
        loaded.processor, prompt=PromptSpec(), max_pixels=64 * 64, max_length=max_length
    )


def _good(name: str, size: tuple[int, int] = (64, 48)) -> dict[str, object]:
    return {
        "images": [name],
        "width": size[0],
        "height": size[1],
        "objects": [{"desc": "red square", "bbox_2d": [1, 2, 30, 40]}],
    }


def _write(tmp_path: Path, records: list[dict[str, object] | str]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    Image.new("RGB", (64, 48), (10, 20, 30)).save(tmp_path / "ok.png")
    (tmp_path / "garbage.png").write_bytes(b"not an image at all")
    full = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(full[: len(full) // 2])
    return tmp_path


@pytest.mark.parametrize(
    ("record", "reason", "message"),
    [
        (_good("missing.png"), "missing_image", "missing.png does not exist"),
        (_good("garbage.png"), "undecodable_image", "garbage.png cannot be read"),
        (_good("truncated.png"), "undecodable_image", "truncated.png cannot be read"),
        (_good("ok.png", (65, 48)), "size_mismatch", "is 64x48 pixels but the record says 65x48"),
        ({**_good("ok.png"), "images": ["ok.png", "ok.png"]}, "multi_image", "has 2 images"),
        (
            {**_good("ok.png"), "objects": [{"desc": "x", "bbox_2d": [5, 5, 1, 1]}]},
            "record_contract",
            "object 0: bbox_2d needs x1 <= x2",
        ),
        ("{not json", "record_contract", "not valid JSON"),
    ],
)
def test_invalid_sample_errors_name_the_record_and_the_problem(
    loaded: LoadedModel, folder: Path, record: dict[str, object] | str, reason: str, message: str
) -> None:
    path = _write(folder, [_good("ok.png"), record])
    with pytest.raises(SampleError) as err:
        DetectionDataset(path, _encoder(loaded))
    assert err.value.reason == reason
    assert str(err.value).startswith(f"{path}:2")
    assert message in str(err.value)


def test_skip_leaves_out_and_counts_every_invalid_sample(loaded: LoadedModel, folder: Path) -> None:
    path = _write(
        folder,
        [
            _good("ok.png"),
            _good("missing.png"),
            _good("garbage.png"),
            "{not json",
            {**_good("ok.png"), "objects": []},
            _good("ok.png", (60, 48)),
        ],
    )
    ds = DetectionDataset(path, _encoder(loaded), on_invalid="skip")
    assert [r.record.source for r in ds.refs] == [f"{path}:1", f"{path}:5"]
    assert dict(ds.report.counts) == {
        "missing_image": 1,
        "undecodable_image": 1,
        "record_contract": 1,
        "size_mismatch": 1,
    }
    summary = ds.report.summary()
    assert summary.startswith("skipped 4 invalid samples (missing_image: 1, record_contract: 1")
    assert f"{path}:2" in summary
    assert ds[1].num_objects == 0


def test_too_long_samples_error_or_are_skipped(loaded: LoadedModel, folder: Path) -> None:
    path = _write(folder, [{**_good("ok.png"), "objects": []}, _good("ok.png")])
    short = DetectionDataset(path, _encoder(loaded)).lengths
    limit = short[0]  # the first fits exactly, the second (one object more) does not
    with pytest.raises(SampleError, match=rf"{path}:2: the sample is \d+ tokens, longer than"):
        DetectionDataset(path, _encoder(loaded, max_length=limit))
    ds = DetectionDataset(path, _encoder(loaded, max_length=limit), on_invalid="skip")
    assert len(ds) == 1
    assert dict(ds.report.counts) == {"too_long": 1}


def test_missing_records_file_says_which_setting(loaded: LoadedModel, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl does not exist \(data\.train_jsonl"):
        DetectionDataset(tmp_path / "nope.jsonl", _encoder(loaded))


def test_image_root_resolves_relative_paths(
    loaded: LoadedModel, folder: Path, tmp_path: Path
) -> None:
    records = tmp_path / "elsewhere"
    records.mkdir()
    path = records / "data.jsonl"
    path.write_text(json.dumps(_good("ok.png")) + "\n")
    with pytest.raises(SampleError, match=r"set data\.image_root"):
        DetectionDataset(path, _encoder(loaded))
    assert len(DetectionDataset(path, _encoder(loaded), image_root=folder)) == 1


def test_limit_keeps_the_first_valid_samples(loaded: LoadedModel, folder: Path) -> None:
    path = _write(folder, [_good("ok.png")] * 5)
    ds = DetectionDataset(path, _encoder(loaded), limit=2)
    assert [r.record.source for r in ds.refs] == [f"{path}:1", f"{path}:2"]


def test_records_after_the_limit_are_never_read(loaded: LoadedModel, folder: Path) -> None:
    path = _write(folder, [_good("ok.png"), _good("ok.png"), "{not json", _good("missing.png")])
    ds = DetectionDataset(path, _encoder(loaded), limit=2)
    assert len(ds) == 2
    assert ds.report.total == 0
    with pytest.raises(SampleError, match=rf"{path}:3"):
        DetectionDataset(path, _encoder(loaded), limit=3)


def test_decode_failure_after_the_check_still_names_the_record(
    loaded: LoadedModel, folder: Path
) -> None:
    path = _write(folder, [_good("ok.png")])
    ds = DetectionDataset(path, _encoder(loaded))
    (folder / "ok.png").write_bytes(b"corrupted later")
    with pytest.raises(SampleError, match=rf"{path}:1: image .*ok\.png cannot be decoded"):
        ds[0]


def test_empty_report_summary() -> None:
    assert InvalidReport().summary() == "no invalid samples"


def test_decompression_bombs_are_undecodable_images(
    loaded: LoadedModel, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64x48 is over twice this
    path = _write(folder, [_good("ok.png")])
    with pytest.raises(SampleError, match=r":1: image .*ok\.png cannot be read \(Image size"):
        DetectionDataset(path, _encoder(loaded))
