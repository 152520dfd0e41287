"""The one plotting set-up: matplotlib without a display (Agg), and saving a figure as PNG."""

from __future__ import annotations

import io
from pathlib import Path


def pyplot():
    """matplotlib.pyplot on the Agg backend (files, no window)."""
    import matplotlib  # heavy: matplotlib, only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy: matplotlib, only when plotting

    return plt


def save(fig, path: Path | None = None, dpi: int = 100) -> bytes | None:
    """Write ``fig`` as PNG to ``path`` (or return the PNG bytes) and free it."""
    plt = pyplot()
    try:
        if path is not None:
            fig.savefig(path, dpi=dpi)
            return None
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        return buf.getvalue()
    finally:
        plt.close(fig)
