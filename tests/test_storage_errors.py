"""File-system errors in `magbench run`, `score` and `report` (issue 20): a read-only folder, a full
disk, no permission are one line naming the path and the fix, exit 2; what was half written (a
partial record line, a temporary preview) is removed; finished records are never touched.

The errors are simulated by monkeypatching the OS calls (CI runs as root, for whom chmod makes
nothing read-only): writes under one folder fail with the errno a real disk would give.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
from pathlib import Path

import numpy as np
import pytest

from test_cli import main

RUN = ("-m", "hold-first", "--device", "cpu", "-q", "--metrics", "psnr")


def _under(path, root: Path) -> bool:
    try:
        return Path(os.fspath(path)).resolve().is_relative_to(root.resolve())
    except TypeError:  # a file descriptor, not a path
        return False


def make_unwritable(monkeypatch, root: Path, code: int = errno.EROFS) -> None:
    """Every attempt to create, write, rename or remove something under ``root`` fails with
    ``code``, as on a read-only mount (EROFS) or a folder the user may not write (EACCES);
    reading still works."""
    real_open, real_mkdir, real_replace, real_unlink = os.open, os.mkdir, os.replace, os.unlink
    real_builtin_open = builtins.open
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def fail(path):
        raise OSError(code, os.strerror(code), os.fspath(path))

    def guarded_open(path, flags, *a, **k):
        if flags & writes and _under(path, root):
            fail(path)
        return real_open(path, flags, *a, **k)

    def guarded_mkdir(path, *a, **k):
        if _under(path, root) and not os.path.isdir(path):
            fail(path)
        return real_mkdir(path, *a, **k)

    def guarded_replace(src, dst, *a, **k):
        if _under(dst, root) or _under(src, root):
            fail(dst)
        return real_replace(src, dst, *a, **k)

    def guarded_unlink(path, *a, **k):
        if _under(path, root):
            fail(path)
        return real_unlink(path, *a, **k)

    def guarded_builtin_open(file, mode="r", *a, **k):
        if any(c in mode for c in "wax+") and _under(file, root):
            fail(file)
        return real_builtin_open(file, mode, *a, **k)

    monkeypatch.setattr(os, "open", guarded_open)
    monkeypatch.setattr(os, "mkdir", guarded_mkdir)
    monkeypatch.setattr(os, "replace", guarded_replace)
    monkeypatch.setattr(os, "rename", guarded_replace)
    monkeypatch.setattr(os, "unlink", guarded_unlink)
    monkeypatch.setattr(builtins, "open", guarded_builtin_open)
    monkeypatch.setattr(io, "open", guarded_builtin_open)


def _fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture()
def finished_run(synth_dir, tmp_path):
    """A finished two-sample run in a folder of its own."""
    out = tmp_path / "disk" / "run"
    code, _, _ = main("run", *RUN, "-d", f"synthetic:{synth_dir}", "--out", out, "--limit", "2")
    assert code == 0
    return out


def test_run_into_a_read_only_folder_is_one_line_naming_the_path_exit_2_and_leaves_nothing(synth_dir, tmp_path, monkeypatch, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    make_unwritable(monkeypatch, ro)
    code, _, err = main("run", *RUN, "-d", f"synthetic:{synth_dir}", "--out", ro / "run", capsys=capsys)
    line = _one_error_line(err)
    assert code == 2 and str(ro / "run") in line and "read-only file system" in line and "--out" in line
    monkeypatch.undo()
    assert list(ro.iterdir()) == []


def test_run_into_a_folder_without_permission_names_the_path_and_the_fix(synth_dir, tmp_path, monkeypatch, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    make_unwritable(monkeypatch, locked, errno.EACCES)
    code, _, err = main("run", *RUN, "-d", f"synthetic:{synth_dir}", "--out", locked / "run", capsys=capsys)
    line = _one_error_line(err)
    assert code == 2 and str(locked / "run") in line and "permission denied" in line and "fix its permissions" in line


def test_full_disk_while_appending_a_record_cuts_the_partial_line_and_keeps_finished_records(synth_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    real_write = os.write
    appends = []

    def full_on_second_record(fd, data):
        if _fd_path(fd).endswith("samples.jsonl"):
            appends.append(len(data))
            if len(appends) == 2:  # the disk fills half-way through the second record
                real_write(fd, bytes(data[: len(data) // 2]))
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_on_second_record)
    code, _, err = main("run", *RUN, "-d", f"synthetic:{synth_dir}", "--out", out, capsys=capsys)
    line = _one_error_line(err)
    assert code == 2 and str(out / "samples.jsonl") in line and "no space left" in line and "re-run the same command" in line
    lines = (out / "samples.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 2, "exactly the one whole record stays, no partial line"
    monkeypatch.undo()
    assert main("run", *RUN, "-d", f"synthetic:{synth_dir}", "--out", out)[0] == 0  # the same command finishes
    from magbench.store import RunDir

    rd = RunDir(out)
    assert len(rd.records()) == 3 and not rd.problems


def test_full_disk_while_writing_a_preview_leaves_no_temporary_file_and_no_files_of_the_sample(synth_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    import magbench.reports.previews as previews

    real_savez = np.savez_compressed
    calls = []

    def full_on_second_preview(file, *a, **k):
        if "previews" in str(file):
            calls.append(file)
            if len(calls) == 2:
                Path(file).write_bytes(b"PK\x03\x04 half a zip")  # what a full disk leaves
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_savez(file, *a, **k)

    monkeypatch.setattr(previews.np, "savez_compressed", full_on_second_preview)
    code, _, err = main("run", *RUN, "-d", f"synthetic:{synth_dir}", "--out", out, capsys=capsys)
    line = _one_error_line(err)
    assert code == 2 and "previews" in line and "no space left" in line
    assert sorted(p.name for p in (out / "previews").iterdir()) == ["synthetic_000_pan.npz"]
    assert sorted(p.name for p in (out / "frames").iterdir()) == ["synthetic_000_pan.npz"]
    assert len((out / "samples.jsonl").read_text().splitlines()) == 1


def test_score_on_a_read_only_run_is_one_line_and_leaves_the_records_as_they_were(finished_run, monkeypatch, capsys):
    before = (finished_run / "samples.jsonl").read_bytes()
    make_unwritable(monkeypatch, finished_run.parent)
    code, _, err = main("score", finished_run, "--metrics", "ssim", "--device", "cpu", capsys=capsys)
    line = _one_error_line(err)
    assert code == 2 and str(finished_run) in line and "read-only file system" in line
    assert (finished_run / "samples.jsonl").read_bytes() == before


def test_score_on_a_full_disk_leaves_the_finished_records_untouched_and_no_temporary_file(finished_run, monkeypatch, capsys):
    before = (finished_run / "samples.jsonl").read_bytes()
    real_fsync = os.fsync

    def full(fd):
        if Path(_fd_path(fd)).name.startswith(".samples.jsonl."):  # the rewritten record file
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    code, _, err = main("score", finished_run, "--metrics", "ssim", "--device", "cpu", capsys=capsys)
    line = _one_error_line(err)
    assert code == 2 and str(finished_run / "samples.jsonl") in line and "no space left" in line
    assert (finished_run / "samples.jsonl").read_bytes() == before
    assert not [p for p in finished_run.iterdir() if p.name.startswith(".samples.jsonl.") and not p.name.endswith(".lock")]


def test_report_into_a_read_only_folder_is_one_line_naming_it(finished_run, tmp_path, monkeypatch, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    make_unwritable(monkeypatch, ro)
    code, _, err = main("report", finished_run, "--out", ro / "report.html", capsys=capsys)
    line = _one_error_line(err)
    assert code == 2 and str(ro) in line and "read-only file system" in line


def test_leaderboard_csv_into_a_read_only_folder_is_one_error_line_naming_it(finished_run, tmp_path, monkeypatch, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    make_unwritable(monkeypatch, ro)
    code, _, err = main("leaderboard", finished_run, "--out", ro / "lb.csv", capsys=capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and str(ro) in errors[0] and "read-only file system" in errors[0]
    assert "Traceback" not in err
