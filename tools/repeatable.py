"""What `make run` keeps when a result differs from the committed one only in the last digits.

Another CPU (or thread count) rounds floating-point sums differently, in the 7th digit of a float32 and the 16th of
a float64. The notebooks print rounded numbers, so their text repeats; records (6 significant digits) and figures can
still move by a last digit or a few pixels. Those keep their committed bytes, so that `make run` on an unchanged tree
leaves `git status` clean on any machine; a real change, larger than this, replaces them.
"""
import base64
import io
import math

RELATIVE = 1e-5          # records: numbers closer than this (relative to the larger) are the same figure
PIXEL_FRACTION = 0.002   # figures: at most this fraction of pixels may differ, by anti-aliasing of a moved line


def same_records(old, new) -> bool:
    """True when two records hold the same ids, fields and strings, and numbers equal to RELATIVE."""
    if isinstance(old, dict) and isinstance(new, dict):
        return old.keys() == new.keys() and all(same_records(old[k], new[k]) for k in old)
    if isinstance(old, list) and isinstance(new, list):
        return len(old) == len(new) and all(same_records(a, b) for a, b in zip(old, new))
    if isinstance(old, bool) or isinstance(new, bool) or not isinstance(old, int | float) or \
            not isinstance(new, int | float):
        return type(old) is type(new) and old == new
    return old == new or math.isclose(old, new, rel_tol=RELATIVE, abs_tol=1e-12)


def pixels(png_base64: str):
    """The image as an (H, W, channels) array of floats in [0, 1]."""
    from matplotlib import image

    return image.imread(io.BytesIO(base64.b64decode(png_base64)), format="png")


def same_picture(old: str, new: str) -> bool:
    """True when two PNGs have the same size and differ in at most PIXEL_FRACTION of their pixels."""
    if old == new:
        return True
    a, b = pixels(old), pixels(new)
    if a.shape != b.shape:
        return False
    changed = (abs(a - b) > 1.5 / 255).any(axis=-1) if a.ndim == 3 else abs(a - b) > 1.5 / 255
    return changed.mean() <= PIXEL_FRACTION


def keep_unchanged_figures(committed, executed) -> int:
    """Give each figure of `executed` the committed bytes where its cell is unchanged and the picture is the same;
    returns how many were kept."""
    kept = 0
    old_cells = {cell.get("id"): cell for cell in committed.cells if cell.cell_type == "code"}
    for cell in executed.cells:
        old = old_cells.get(cell.get("id"))
        changed = old is None or old.source != cell.source or len(old.outputs) != len(cell.outputs)
        if cell.cell_type != "code" or changed:
            continue
        for before, after in zip(old.outputs, cell.outputs):
            png_before, png_after = before.get("data", {}).get("image/png"), after.get("data", {}).get("image/png")
            if png_before and png_after and png_before != png_after and same_picture(png_before, png_after):
                after["data"]["image/png"] = png_before
                kept += 1
    return kept
