"""Prompt datasets: prompts:PATH with extended prompts beside it, the built-in set, the prompt
files' hash in the identity, and the MovieGenVideoBench artefact (fetched with its hashes checked)."""

from __future__ import annotations

import hashlib
import io

import pytest

from magbench.data import load_dataset
from magbench.data.prompts import (
    BUILTIN_PROMPTS,
    MOVIEGEN_FILES,
    MOVIEGEN_PROMPTS,
    load_prompt_file,
)
from magbench.download import artifacts_for, manual_hint
from magbench.errors import DatasetError, MagbenchError, MissingWeightsError


def test_builtin_prompts_are_the_offline_default():
    ds = load_dataset("prompts")
    assert ds.id == "prompts" and [s.prompt for s in ds.samples] == list(BUILTIN_PROMPTS)
    assert ds.revision.startswith("sha256:") and ds.describe()["builtin"] is True
    assert ds.samples[0].sample_id == "p0000" and ds.samples[0].caption == BUILTIN_PROMPTS[0]


def test_prompt_file_uses_the_extended_prompts_beside_it(tmp_path):
    (tmp_path / "set.txt").write_text("a cat\na dog\n")
    (tmp_path / "set_extended.txt").write_text("a fluffy cat on a sofa\na dog running on grass\n")
    ds = load_dataset(f"prompts:{tmp_path / 'set.txt'}")
    assert [(s.prompt, s.short_prompt) for s in ds.samples] == [
        ("a fluffy cat on a sofa", "a cat"), ("a dog running on grass", "a dog")]
    info = ds.describe()
    assert info["extended"] is True
    assert info["sha256"] == hashlib.sha256(b"a cat\na dog\n").hexdigest()
    assert info["extended_sha256"] == hashlib.sha256((tmp_path / "set_extended.txt").read_bytes()).hexdigest()
    # the extended file given directly is a plain prompt file
    direct = load_prompt_file(tmp_path / "set_extended.txt")
    assert direct.extended is None and direct.samples[1].prompt == "a dog running on grass"


def test_the_prompt_files_hash_is_in_the_identity(tmp_path):
    p = tmp_path / "p.txt"
    p.write_text("one\ntwo\n")
    first = load_prompt_file(p).revision
    p.write_text("one\ntwo!\n")
    assert load_prompt_file(p).revision != first
    (tmp_path / "p_extended.txt").write_text("ONE\nTWO\n")
    assert load_prompt_file(p).revision not in (first, load_prompt_file(tmp_path / "p_extended.txt").revision)


def test_samples_per_prompt_expand_with_distinct_ids(tmp_path):
    p = tmp_path / "p.txt"
    p.write_text("one\ntwo\n")
    ds = load_prompt_file(p).with_samples_per_prompt(3)
    assert [s.sample_id for s in ds.samples[:4]] == ["p0000-0", "p0000-1", "p0000-2", "p0001-0"]
    assert len(ds) == 6 and ds.describe()["samples_per_prompt"] == 3
    with pytest.raises(DatasetError, match=">= 1"):
        load_prompt_file(p).with_samples_per_prompt(0)


def test_bad_prompt_files_fail_in_one_line_naming_the_file(tmp_path):
    with pytest.raises(DatasetError, match="no such prompt file"):
        load_dataset(f"prompts:{tmp_path / 'missing.txt'}")
    (tmp_path / "b.txt").write_text("one\n\ntwo\n")
    with pytest.raises(DatasetError, match="b.txt:2: blank line"):
        load_prompt_file(tmp_path / "b.txt")
    (tmp_path / "c.txt").write_text("one\ntwo\n")
    (tmp_path / "c_extended.txt").write_text("ONE\n")
    with pytest.raises(DatasetError, match="1 extended prompts for 2 prompts"):
        load_prompt_file(tmp_path / "c.txt")
    (tmp_path / "e.txt").write_text("\n")
    with pytest.raises(DatasetError, match="no prompts"):
        load_prompt_file(tmp_path / "e.txt")


def test_moviegen_missing_offline_names_the_download_command(tmp_path, monkeypatch):
    monkeypatch.setenv("MAGBENCH_CACHE", str(tmp_path))
    monkeypatch.delenv("MAGBENCH_MOVIEGEN_PROMPTS", raising=False)
    assert not MOVIEGEN_PROMPTS.is_present()
    with pytest.raises(MissingWeightsError, match="magbench download --dataset moviegen"):
        load_dataset("moviegen")
    assert artifacts_for(datasets=["moviegen"]) == [MOVIEGEN_PROMPTS]
    hint = manual_hint(MOVIEGEN_PROMPTS)
    assert "https://raw.githubusercontent.com/Xilluill/MAG/08008c604c872b8a86123e3c4d13e4dda5806e08/prompts/MovieGenVideoBench.txt" in hint
    with pytest.raises(MagbenchError, match="downloadable: magbench, moviegen"):
        artifacts_for(datasets=["nope"])


def _fake_files() -> dict[str, bytes]:
    return {"MovieGenVideoBench.txt": b"a cat\na dog\n", "MovieGenVideoBench_extended.txt": b"A CAT\nA DOG\n"}


def test_moviegen_fetch_keeps_only_files_with_the_pinned_hashes(tmp_path, monkeypatch):
    import magbench.data.prompts as prompts

    files = _fake_files()
    monkeypatch.setenv("MAGBENCH_CACHE", str(tmp_path))
    urls: list[str] = []

    def urlopen(url, timeout):
        urls.append(url)
        return io.BytesIO(files[url.rsplit("/", 1)[1]])

    monkeypatch.setattr(prompts.urllib.request, "urlopen", urlopen)
    with pytest.raises(MagbenchError, match="does not have the expected SHA-256"):
        MOVIEGEN_PROMPTS.download()  # the fake bytes are not the real files
    assert not list((tmp_path / "prompts").rglob("*.txt"))
    assert urls[0].endswith(f"{prompts.MOVIEGEN_COMMIT}/prompts/MovieGenVideoBench.txt")
    monkeypatch.setattr(prompts, "MOVIEGEN_FILES", {k: hashlib.sha256(v).hexdigest() for k, v in files.items()})
    folder = MOVIEGEN_PROMPTS.download()
    assert MOVIEGEN_PROMPTS.local_path() == folder
    ds = load_dataset("moviegen")
    assert ds.id == "moviegen" and ds.samples[1].prompt == "A DOG" and ds.samples[1].short_prompt == "a dog"
    assert ds.describe()["revision"] == prompts.MOVIEGEN_COMMIT and "MovieGenBench" in ds.describe()["origin"]


def test_moviegen_local_copy_is_read_from_the_folder_given(tmp_path):
    for name, data in _fake_files().items():
        (tmp_path / name).write_bytes(data)
    ds = load_dataset(f"moviegen:{tmp_path}")
    assert ds.id == "moviegen" and ds.describe()["revision"] == "local" and len(ds) == 2
