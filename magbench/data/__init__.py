"""Datasets: MAG-Bench from the hub, csv folders, and the synthetic leave-and-return set.

A dataset spec on the command line is ``NAME`` or ``NAME:ARG`` (``csv:/path/to/folder``).
Factories take the argument (or None) and return a :class:`Dataset`.
"""

from __future__ import annotations

from magbench.data.dataset import Dataset, VideoSample, load_csv_dataset
from magbench.errors import DatasetError
from magbench.registry import DATASETS, register_dataset


@register_dataset("synthetic")
def synthetic_dataset(arg: str | None = None) -> Dataset:
    """Procedural leave-and-return videos, generated locally (the default). ARG: a folder made by
    `magbench data synth`, or omitted for the cached default set."""
    from magbench.data.synthetic import SynthConfig, load_synthetic

    if arg:
        return load_csv_dataset(arg, dataset_id=f"synthetic:{arg}")
    return load_synthetic(SynthConfig())


@register_dataset("magbench")
def magbench_dataset(arg: str | None = None) -> Dataset:
    """The official MAG-Bench (HuggingFace xilluill/MAG); ARG: a local copy instead."""
    from magbench.data.magbench_hub import load_magbench

    if arg:
        return load_csv_dataset(arg, dataset_id="magbench", revision="local")
    return load_magbench()


@register_dataset("csv")
def csv_dataset(arg: str | None = None) -> Dataset:
    """Any folder in the MAG-Bench schema: csv:PATH."""
    if not arg:
        raise DatasetError("the csv dataset needs a folder: --dataset csv:PATH")
    return load_csv_dataset(arg)


@register_dataset("prompts")
def prompts_dataset(arg: str | None = None):
    """Prompts for text-to-video tasks: prompts:PATH (one per line, ``<stem>_extended<suffix>``
    beside it used where present), or the small built-in set with no PATH."""
    from magbench.data.prompts import builtin_prompts, load_prompt_file

    return load_prompt_file(arg) if arg else builtin_prompts()


@register_dataset("moviegen")
def moviegen_dataset(arg: str | None = None):
    """MovieGenVideoBench prompts with their extended versions, as the MAG repository ships them
    (`magbench download --dataset moviegen`); ARG: a local folder holding both files instead."""
    from magbench.data.prompts import load_moviegen

    return load_moviegen(arg)


def load_dataset(spec: str) -> Dataset:
    name, _, arg = spec.partition(":")
    factory = DATASETS.get(name)
    return factory(arg or None)


__all__ = ["Dataset", "VideoSample", "load_csv_dataset", "load_dataset"]
