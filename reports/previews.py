"""Frame strips and animated previews from a run's ``previews/ID.npz``, as data URIs.

Still frames are PNG (lossless: a report about pixel fidelity should not add JPEG artefacts).
The animation is a looping GIF of ground truth | generated side by side, made with Pillow:
GIF plays everywhere, offline, with no script; its 256-colour palette is acceptable for a
motion preview, and the stills beside it are exact.
"""

from __future__ import annotations

import base64
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

GIF_FRAME_MS = 250  # previews hold <= 16 frames: about four seconds per loop
SEPARATOR_PX = 2


@dataclass
class Preview:
    target: np.ndarray          # K x H x W x 3 uint8
    generated: np.ndarray       # K x H x W x 3 uint8
    frame_index: np.ndarray     # K: index in the target segment
    bestmatch_target: np.ndarray | None = None

    def picks(self) -> list[tuple[str, int]]:
        """(label, preview row) for the first, middle and last previewed frames."""
        k = self.generated.shape[0]
        rows = dict.fromkeys([0, k // 2, k - 1])
        names = ["first", "middle", "last"] if len(rows) == 3 else ["first", "last"][: len(rows)]
        return list(zip(names, rows))


class PreviewError(Exception):
    """A preview file is missing or unreadable (reported as a warning, never fatal)."""


def load_preview(run_path: Path, record: "SampleRecord") -> Preview | None:
    """The record's preview, None if it has none; PreviewError if the file is unusable."""
    rel = record.preview
    if not rel:
        return None
    path = Path(run_path) / rel
    try:
        with np.load(path, allow_pickle=False) as z:
            target, generated = z["target"], z["generated"]
            index = z["frame_index"] if "frame_index" in z.files else np.arange(generated.shape[0])
            best = z["bestmatch_target"] if "bestmatch_target" in z.files else None
    except FileNotFoundError:
        raise PreviewError(f"{path}: preview file missing") from None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise PreviewError(f"{path}: unreadable preview ({exc})") from exc
    if target.ndim != 4 or generated.shape != target.shape or target.shape[-1] != 3 or target.shape[0] == 0:
        raise PreviewError(f"{path}: preview arrays have shapes {target.shape} and {generated.shape}; expected K x H x W x 3")
    if best is not None and best.shape != target.shape:
        best = None
    return Preview(_u8(target), _u8(generated), np.asarray(index), None if best is None else _u8(best))


def _u8(a: np.ndarray) -> np.ndarray:
    return a if a.dtype == np.uint8 else np.clip(a, 0, 255).astype(np.uint8)


def png_uri(frame: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def side_by_side_gif_uri(target: np.ndarray, generated: np.ndarray) -> str:
    """Looping GIF: ground truth on the left, generated on the right, white gap between."""
    k, h, w, _ = target.shape
    canvas = np.full((k, h, 2 * w + SEPARATOR_PX, 3), 255, dtype=np.uint8)
    canvas[:, :, :w] = target
    canvas[:, :, w + SEPARATOR_PX:] = generated
    # One palette for the whole clip keeps colours from flickering between frames.
    palette_src = Image.fromarray(canvas.reshape(k * h, -1, 3)).quantize(colors=255, method=Image.Quantize.MEDIANCUT)
    frames = [Image.fromarray(f).quantize(palette=palette_src, dither=Image.Dither.NONE) for f in canvas]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=GIF_FRAME_MS, loop=0, optimize=False, disposal=1)
    return "data:image/gif;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def write_preview(
    run_path: Path, sample_id: str, target: "torch.Tensor", generated: "torch.Tensor",
    bestmatch_indices: list[int] | None = None, max_frames: int = 16, max_width: int = 192,
) -> str:
    """Write ``previews/ID.npz`` (the arrays :func:`load_preview` reads); returns its path
    relative to the run folder. Up to ``max_frames`` frames spread over the target segment,
    at most ``max_width`` pixels wide, uint8, no pickle."""
    import os

    import torch

    from magbench.data.video_io import resize_frames, to_uint8_frames
    from magbench.store import safe_name, writing

    k = min(max_frames, target.shape[0])
    idx = np.unique(np.linspace(0, target.shape[0] - 1, k).round().astype(int))
    scale = min(1.0, max_width / target.shape[-1])
    size = (max(2, round(target.shape[-2] * scale)), max(2, round(target.shape[-1] * scale)))

    def small(x: "torch.Tensor") -> np.ndarray:
        return to_uint8_frames(resize_frames(x[idx], size) if scale < 1 else x[idx])

    arrays = {"target": small(target), "generated": small(generated), "frame_index": idx}
    if bestmatch_indices is not None and len(bestmatch_indices) == target.shape[0]:
        arrays["bestmatch_target"] = small(target[torch.as_tensor(bestmatch_indices)])
    rel = Path("previews") / f"{safe_name(sample_id)}.npz"
    path = Path(run_path) / rel
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    with writing(path, partial=tmp):  # a full disk leaves no temporary file behind
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
    return rel.as_posix()
