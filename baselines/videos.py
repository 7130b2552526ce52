"""``--method videos:DIR``: score videos generated elsewhere as if they were a method's output.

Most researchers have their own inference code. Run it on the dataset's samples (the protocol's
context: ``magbench data info DATASET`` lists each sample's split), save one video per sample in
``DIR`` named by its sample id, and ``magbench run --method videos:DIR --dataset DATASET``
scores them with the same split, resizing and metrics as any method. Per sample, the first of:

* ``DIR/<sample id>.mp4`` (or ``.mkv``, ``.webm``, ``.mov``, ``.avi``): decoded as the dataset's
  videos are (lossy codecs lose a little: scores are within the codec's loss of the frames);
* ``DIR/<sample id>.npz``: uint8 T x H x W x 3 under the key ``generated`` (the kept frames a
  run writes to ``RUN/frames/``) or as its only array: lossless;
* ``DIR/<sample id>/*.png``: one PNG per frame, in name order: lossless.

(The sample id as a file name: characters other than letters, digits, ``-_.`` read as ``_``, as
``--save-videos`` writes them.) A video holds either the target segment (``num_target`` frames)
or the whole kept clip (context + target; the target is then its frames from the switch on):
which one is detected from the frame count and said in the record's ``method_extras``
(``video_span``). Another count, a frame size other than the ground truth's (give ``--opt
resolution=HxW`` to score at the videos' size: the ground truth is then resized to it as for a
method of that resolution) or a missing file is a per-sample failure naming the file.

Nothing generated here is timed: records say ``timing.measured: false`` and the leaderboard
shows no FPS for such a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator, Optional

import numpy as np
import torch

from magbench.errors import MagbenchError, SampleError
from magbench.method import Method, MethodNeeds, SampleInfo
from magbench.options import MethodOptions, option
from magbench.registry import register_method

PREFIX = "videos:"  # --method videos:DIR
CONTAINERS = (".mp4", ".mkv", ".webm", ".mov", ".avi")
BLOCK = 12  # frames per yielded block (untimed: only the harness's per-block checks see them)


@dataclass(frozen=True)
class VideoFolderOptions(MethodOptions):
    dir: str = option("", path=True, help="the folder of videos, one per sample, named by sample id")
    resolution: Optional[tuple[int, int]] = option(
        None, help="HxW the videos were generated at: the ground truth is resized to it (default: as the dataset has it)")


def is_video_folder_spec(name: str) -> bool:
    return name.startswith(PREFIX)


@register_method("videos")
class VideoFolder(Method):
    """Videos generated elsewhere, one per sample (``--method videos:DIR``), scored as a method's output."""

    description = "Scores a folder of videos made by your own code (--method videos:DIR), one per sample id."
    needs = MethodNeeds(gpu=False)
    Options = VideoFolderOptions
    measures_time = False  # reading files is not generating them

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        res = self.options.get("resolution")
        self.resolution = tuple(res) if res else None  # type: ignore[misc]

    def validate_options(self, options: dict[str, Any]) -> dict[str, Any]:
        folder = options.get("dir") or ""
        if not folder:
            raise MagbenchError("method videos: name the folder of videos: --method videos:DIR")
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise MagbenchError(f"--method videos:{folder}: not a folder; give the folder holding <sample id>.mp4 (or .npz, or <sample id>/*.png)")
        # The folder as an absolute path: the same folder named two ways is the same run.
        return {**options, "dir": str(path.resolve())}

    def reset(self, sample: SampleInfo) -> None:
        super().reset(sample)
        self._extras: dict[str, Any] = {}
        self._context_frames = 0

    def memorize(self, frames: torch.Tensor) -> None:
        self._context_frames += frames.shape[0]  # the video was made elsewhere; only its split matters

    def warmup(self, sample: SampleInfo) -> None:
        """Nothing to warm up: nothing here is timed."""

    def generate(self, num_frames: int) -> Iterator[torch.Tensor]:
        info = self.sample
        if info is None:
            raise RuntimeError("videos: generate() called before reset()")
        path = find_video(Path(self.options["dir"]), info.sample_id)
        frames = read_frames(path)  # uint8 T x H x W x 3
        whole = info.num_context + info.num_target
        if frames.shape[0] == num_frames:
            span, target = "target", frames
        elif frames.shape[0] == whole:
            span, target = "whole clip", frames[info.num_context:]
        else:
            raise SampleError(
                f"{path}: {frames.shape[0]} frames; sample {info.sample_id} needs its target segment ({num_frames} frames) "
                f"or its whole kept clip ({whole} = {info.num_context} context + {num_frames} target)"
            )
        target = _unpad(target, info.height, info.width)
        if target.shape[1:3] != (info.height, info.width):
            raise SampleError(
                f"{path}: frames are {target.shape[1]}x{target.shape[2]} but the ground truth is {info.height}x{info.width}; "
                f"generate at the dataset's size, or give --opt resolution={target.shape[1]}x{target.shape[2]} "
                "to resize the ground truth to the videos' size"
            )
        self._extras = {"video_file": path.name, "video_span": span, "video_frames": int(frames.shape[0])}
        out = torch.from_numpy(np.ascontiguousarray(target)).permute(0, 3, 1, 2).float().div_(255.0)
        for start in range(0, num_frames, BLOCK):
            yield out[start : start + BLOCK].to(self.device)

    def sample_extras(self) -> dict[str, Any]:
        return dict(self._extras)


def find_video(folder: Path, sample_id: str) -> Path:
    """The file (or PNG folder) of ``sample_id`` in ``folder``; a SampleError naming what was looked for."""
    from magbench.store import safe_name

    stems = list(dict.fromkeys([sample_id, safe_name(sample_id)]))
    for stem in stems:
        for ext in (*CONTAINERS, ".npz"):
            if (folder / f"{stem}{ext}").is_file():
                return folder / f"{stem}{ext}"
        if (folder / stem).is_dir() and any((folder / stem).glob("*.png")):
            return folder / stem
    raise SampleError(
        f"{folder}: no video for sample {sample_id} (looked for {stems[-1]}.mp4 and the other containers, "
        f"{stems[-1]}.npz, {stems[-1]}/*.png)"
    )


def read_frames(path: Path) -> np.ndarray:
    """uint8 T x H x W x 3 frames of a video file, a ``.npz`` or a folder of PNGs."""
    if path.is_dir():
        from PIL import Image

        pngs = sorted(path.glob("*.png"))
        try:
            frames = [np.asarray(Image.open(p).convert("RGB")) for p in pngs]
        except OSError as exc:
            raise SampleError(f"{path}: unreadable PNG ({exc})") from None
        if len({f.shape for f in frames}) != 1:
            raise SampleError(f"{path}: the PNG frames differ in size")
        return np.stack(frames)
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                arr = z["generated"] if "generated" in z.files else (z[z.files[0]] if len(z.files) == 1 else None)
        except (OSError, ValueError) as exc:
            raise SampleError(f"{path}: unreadable .npz ({exc})") from None
        if arr is None:
            raise SampleError(f"{path}: holds {len(z.files)} arrays and none named 'generated'")
        if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise SampleError(f"{path}: array {arr.dtype} {tuple(arr.shape)}; expected uint8 T x H x W x 3")
        return arr
    from magbench.data.video_io import read_video

    return read_video(path)


def _unpad(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """mp4 written by ``--save-videos`` pads an odd height or width by one pixel (yuv420p needs
    even sizes): crop that pixel off again."""
    h, w = frames.shape[1:3]
    if (h, w) != (height, width) and h - height in (0, 1) and w - width in (0, 1) and (height % 2 or width % 2):
        return frames[:, :height, :width]
    return frames
