"""PNG outputs: sample grids (images) or scatter plots (2-D points), Fig. 4-style strips and
Fig. 6-style inpainting rows."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from ncsn_core import io as atomic


def _png_of_images(x: torch.Tensor, nrow: int) -> Callable[[IO[bytes]], None]:
    """A writer of the PNG of an image grid (for :func:`ncsn_core.io.write_with`)."""
    from PIL import Image
    from torchvision.utils import make_grid

    g = make_grid(x.float().clamp(0, 1), nrow=nrow, padding=1, pad_value=1.0)
    if g.shape[-1] < 128:  # tiny images (digits 8×8): upscale so the PNG is viewable
        k = max(1, 256 // g.shape[-1])
        g = g.repeat_interleave(k, dim=-1).repeat_interleave(k, dim=-2)
    arr = (g.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    return lambda f: Image.fromarray(arr).save(f, format="PNG")


def _png_of_points(x: torch.Tensor, ref: torch.Tensor | None, title: str = "") -> Callable[[IO[bytes]], None]:
    """A writer of the PNG of a scatter plot of 2-D points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    if ref is not None:
        ax.scatter(ref[:, 0], ref[:, 1], s=2, c="0.8", label="data")
    ax.scatter(x[:, 0], x[:, 1], s=2, c="tab:red", label="samples")
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()

    def write(f: IO[bytes]) -> None:
        try:
            fig.savefig(f, format="png")
        finally:
            plt.close(fig)

    return write


def save_grid(x: torch.Tensor, data: Any, path: Path) -> None:
    if getattr(data, "kind", "image") == "points":
        ref = data.train[:2000] if getattr(data, "train", None) is not None else None
        atomic.write_with(path, _png_of_points(x, ref))
        return
    n = min(len(x), 64)
    atomic.write_with(path, _png_of_images(x[:n], nrow=int(math.ceil(math.sqrt(n)))))


def save_strip(inter: dict[str, torch.Tensor], data: Any, path: Path) -> None:
    """Rows: samples; columns: recorded steps (NCSN Fig. 4)."""
    if getattr(data, "kind", "image") == "points":
        last = list(inter.values())[-1]
        atomic.write_with(path, _png_of_points(last.reshape(-1, last.shape[-1]), None, "intermediate"))
        return
    snaps = torch.cat([v for v in inter.values()], dim=0)  # [T, B, C, H, W]
    t, b = snaps.shape[0], snaps.shape[1]
    grid = snaps.transpose(0, 1).reshape(t * b, *snaps.shape[2:])
    atomic.write_with(path, _png_of_images(grid, nrow=t))


INPAINTING_ROWS = 64  # at most this many reference images in inpainting.png


def inpainting_rows(
    samples: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor, repeats: int
) -> torch.Tensor:
    """NCSN Fig. 6's tiles, row by row: per reference image r (at most ``INPAINTING_ROWS``),
    the occluded image ``reference[r] * mask[r]``, its ``repeats`` completions (samples
    r·repeats … r·repeats + repeats − 1; blank where the run drew fewer), the original.
    Returns R·(repeats + 2) images, to be laid out ``repeats + 2`` per row."""
    k = int(repeats)
    rows = min(reference.shape[0], INPAINTING_ROWS, -(-samples.shape[0] // k))
    blank = torch.ones_like(reference[0])
    tiles: list[torch.Tensor] = []
    for r in range(rows):
        done = samples[r * k : (r + 1) * k].to(reference.dtype)
        tiles += [reference[r] * mask[r], *done, *([blank] * (k - done.shape[0])), reference[r]]
    return torch.stack(tiles) if tiles else reference[:0]


def save_inpainting(samples: torch.Tensor, used: dict[str, Any], path: Path) -> None:
    """``inpainting.png`` (NCSN Fig. 6): rows = reference images; columns = the occluded image,
    its completions, the original. ``used``: what stage inpainting used (Inpainting.used())."""
    k = int(used["repeats"])
    tiles = inpainting_rows(samples, used["reference"], used["mask"], k)
    atomic.write_with(path, _png_of_images(tiles, nrow=k + 2))


def save_interpolation(x: torch.Tensor, data: Any, path: Path) -> None:
    """``interpolation.png`` (NCSNv2's interpolation figure): ``x`` is [rows, columns, ...]; one
    row of the figure per row of ``x``, ``columns`` images across (the official code's
    make_grid(samples, nrow=n_interpolations)). 2-D points: every row's points in one plot."""
    rows, columns = x.shape[0], x.shape[1]
    flat = x.reshape(rows * columns, *x.shape[2:])
    if getattr(data, "kind", "image") == "points":
        atomic.write_with(path, _png_of_points(flat, None, "interpolation"))
        return
    atomic.write_with(path, _png_of_images(flat, nrow=columns))
