"""Everyday mistakes on the command line, as a newcomer makes them (issue 20): each is refused
before any work in one line that names the option, the value given and what is allowed, with exit
status 2 and no run folder left behind (which would refuse the corrected command)."""

from __future__ import annotations

import pytest

from test_cli import main

# (case, arguments after `magbench run`, fragments the one error line must hold)
BAD_VALUES = [
    ("block-not-a-number", ["-m", "replay-context", "--opt", "block=abc"], ["block='abc'", "an integer >= 1"]),
    ("block-negative", ["-m", "replay-context", "--opt", "block=-3"], ["block=-3", "an integer >= 1"]),
    ("block-fractional", ["-m", "hold-first", "--opt", "block=2.5"], ["block=2.5", "an integer >= 1"]),
    ("block-zero-oracle", ["-m", "oracle", "--opt", "block=0"], ["block=0", "an integer >= 1"]),
    ("mirror-not-a-choice", ["-m", "replay-context", "--opt", "mirror=sideways"],
     ["mirror='sideways'", "one of auto, annotation, frames, switch"]),
    ("detect-ratio-out-of-range", ["-m", "shuffle-context", "--opt", "detect_ratio=2"],
     ["detect_ratio=2", "a number >= 0 and <= 1"]),
    ("mag-slots-not-a-number", ["-m", "mag", "--opt", "slots=banana"], ["slots='banana'", "an integer"]),
    ("random-weights-not-a-bool", ["-m", "causvid", "--opt", "random_weights=maybe"],
     ["random_weights='maybe'", "true or false"]),
    ("switch-fraction-above-one", ["-m", "replay-context", "--switch-fraction", "1.5"],
     ["--switch-fraction 1.5", "strictly between 0 and 1"]),
    ("switch-fraction-negative", ["-m", "replay-context", "--switch-fraction", "-0.5"],
     ["--switch-fraction -0.5", "strictly between 0 and 1"]),
    ("switch-fraction-one", ["-m", "replay-context", "--switch-fraction", "1"], ["--switch-fraction 1", "strictly between 0 and 1"]),
    ("limit-zero", ["-m", "replay-context", "--limit", "0"], ["--limit 0", "at least 1"]),
    ("limit-negative", ["-m", "replay-context", "--limit", "-1"], ["--limit -1", "at least 1"]),
]


@pytest.mark.parametrize("case,args,fragments", BAD_VALUES, ids=[c[0] for c in BAD_VALUES])
def test_bad_value_is_one_line_naming_option_value_and_what_is_allowed_exit_2_no_folder(
    case, args, fragments, synth_dir, tmp_path, capsys
):
    out = tmp_path / "run"
    code, _, err = main("run", *args, "-d", f"synthetic:{synth_dir}", "--out", out, "--device", "cpu", "-q", capsys=capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert not out.exists()
