"""Hugging Face datasets in: Dataset objects, save_to_disk folders, .arrow files, ``hf:`` ids."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import pytest

from prefaudit import audit, load
from prefaudit.errors import ConfigError, DataFormatError
from prefaudit.loaders import hf
from prefaudit.testing import cli_in_process as cli

REPO = Path(__file__).resolve().parent.parent
ANALYZERS = ["hygiene", "agreement", "length"]
HUB_ID = "anthropic-sample/hh-rlhf-harmless"


@pytest.fixture(scope="module")
def hh_path(sample_dir: Path) -> Path:
    return sample_dir / "hh_rlhf_harmless_test_300.jsonl"


@pytest.fixture(scope="module")
def hh_dataset(hh_path: Path, tmp_path_factory) -> datasets.Dataset:
    return datasets.Dataset.from_json(str(hh_path), cache_dir=str(tmp_path_factory.mktemp("json_cache")))


def build_hub_cache(jsonl: Path, cache: Path, repo_id: str) -> None:
    """Lay the data out as ``load_dataset(repo_id)`` leaves it in the datasets cache:
    ``<org>___<name>/<config>/<version>/<commit>/`` with the split's arrow file and
    ``dataset_info.json`` (built by the datasets JSON builder, then moved into place)."""
    from datasets.packaged_modules.json.json import Json

    name = repo_id.split("/")[-1]
    builder = Json(cache_dir=str(cache / "build"), dataset_name=name, data_files={"test": str(jsonl)})
    builder.download_and_prepare()
    target = cache / repo_id.replace("/", "___") / "default" / "0.0.0"
    target.mkdir(parents=True)
    shutil.move(builder.cache_dir, target / "0123456789abcdef")
    shutil.rmtree(cache / "build")


def core_metrics(table) -> dict[str, float | None]:
    return audit(table, ANALYZERS, seed=0).metrics


def test_round_trip_jsonl_dataset_disk_and_hub_cache(hh_path, hh_dataset, tmp_path, monkeypatch):
    """The HH-RLHF sample as JSONL, as a Dataset, as a save_to_disk folder and as hf: from a
    cache built here give the same pair count, load report and audit metrics."""
    ref_table, ref_report = load(hh_path)
    ref_metrics = core_metrics(ref_table)
    disk = tmp_path / "saved"
    datasets.DatasetDict({"test": hh_dataset}).save_to_disk(str(disk))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_home" / "datasets"))
    build_hub_cache(hh_path, tmp_path / "hf_home" / "datasets", HUB_ID)
    for data in (hh_dataset, str(disk), f"hf:{HUB_ID}"):
        table, report = load(data, split="test" if not isinstance(data, datasets.Dataset) else None)
        assert report.formats == ref_report.formats == ["hh_rlhf"]
        assert (report.n_records, report.n_rows) == (ref_report.n_records, ref_report.n_rows) == (300, 300)
        assert ([e.to_dict() for e in report.events.values()]
                == [e.to_dict() for e in ref_report.events.values()])
        assert table["pair_id"].nunique() == ref_table["pair_id"].nunique()
        for col in ("prompt", "chosen", "rejected", "load_flags"):
            assert table[col].tolist() == ref_table[col].tolist()
        assert core_metrics(table) == ref_metrics


def test_cli_reads_disk_folder_arrow_file_and_hub_cache(hh_path, hh_dataset, tmp_path, monkeypatch, capsys):
    disk = tmp_path / "saved"
    hh_dataset.save_to_disk(str(disk))
    arrow = Path(hh_dataset.cache_files[0]["filename"])
    cache = tmp_path / "hf_home" / "datasets"
    build_hub_cache(hh_path, cache, HUB_ID)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    assert len(load(arrow).table) == len(load(f"hf:{HUB_ID}:default", split="test").table) == 300
    want = json.loads(cli(capsys, "inspect", hh_path, "--json")[1])
    for args in ((disk,), (f"hf:{HUB_ID}", "--split", "test")):
        code, out, err = cli(capsys, "inspect", *args, "--json")
        assert code == 0, err
        got = json.loads(out)
        for key in ("formats", "n_judgements", "n_pairs", "n_ties", "n_unique_prompts"):
            assert got[key] == want[key], (args, key)
        assert got["load_report"]["events"] == want["load_report"]["events"]


def test_hub_id_not_cached_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "empty_cache"
    cache.mkdir()
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    code, _, err = cli(capsys, "inspect", "hf:nobody/nothing")
    assert code == 2
    line = err.strip()
    assert "\n" not in line
    assert "hf:nobody/nothing" in line and str(cache) in line and "does not download" in line


def test_dataset_dict_needs_a_split_and_lists_them(hh_dataset):
    dd = datasets.DatasetDict({"train": hh_dataset, "test": hh_dataset})
    with pytest.raises(ConfigError, match="pass split= .* one of: train, test"):
        load(dd)
    with pytest.raises(ConfigError, match="has no split 'validation'.*train, test"):
        load(dd, split="validation")
    assert len(load(datasets.DatasetDict({"test": hh_dataset})).table) == 300  # one split: that one
    assert len(load(dd, split="train").table) == 300


def test_audit_accepts_a_dataset(hh_path, hh_dataset):
    result = audit(datasets.DatasetDict({"test": hh_dataset}), ["hygiene"], split="test")
    assert result.load_report.formats == ["hh_rlhf"] and result.load_report.n_records == 300
    assert result.metrics == audit(load(hh_path).table, ["hygiene"]).metrics


def test_iterable_dataset_is_read_in_batches(hh_dataset):
    """Records come from an IterableDataset one batch at a time: after the first record only
    the first batch has been produced by the source."""
    produced = []
    rows = hh_dataset.to_list()

    def gen():
        for r in rows:
            produced.append(1)
            yield r

    stream = datasets.IterableDataset.from_generator(gen)
    records = hf.iter_records(stream, batch_size=50)
    first = next(records)
    assert first[1] == 1 and first[2] == rows[0]
    assert 50 <= len(produced) < 300
    table, report = load(datasets.IterableDataset.from_generator(gen))
    assert report.formats == ["hh_rlhf"] and len(table) == 300
    assert table["chosen"].tolist() == load(hh_dataset).table["chosen"].tolist()


def test_column_map_and_message_lists_from_a_dataset(sample_dir):
    """A Dataset in a custom schema with nested message structs goes through the column map;
    the LLaMA-Factory sample gives the same pairs as its own loader."""
    records = json.loads((sample_dir / "llama_factory_dpo_en_100.json").read_text(encoding="utf-8"))
    ds = datasets.Dataset.from_list([{"turns": r["conversations"], "better": r["chosen"],
                                      "worse": r["rejected"]}
                                     for r in records if "system" not in r])
    mine, _ = load(ds, columns="prompt=turns,chosen=better,rejected=worse")
    ref, _ = load(sample_dir / "llama_factory_dpo_en_100.json")
    ref = ref[[("system" not in r) for r in records]].reset_index(drop=True)
    for col in ("prompt", "chosen", "rejected", "prompt_messages", "chosen_messages", "rejected_messages"):
        assert mine[col].tolist() == ref[col].tolist()


def test_bad_dataset_paths(tmp_path):
    bad = tmp_path / "broken.arrow"
    bad.write_bytes(b"not arrow")
    with pytest.raises(DataFormatError, match="broken.arrow: not a readable Hugging Face dataset"):
        load(bad)
    with pytest.raises(ConfigError, match="expected hf:ORG/NAME"):
        load("hf:a/b/c")
