"""Small helpers shared by the measurement reports: Markdown tables and atomic PNG files."""
from __future__ import annotations

import contextlib
import io
import re
import unicodedata
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

from ._io import atomic_write
from .errors import QianyiWarning


def fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if v != 0 and abs(v) < 0.5 * 10 ** -digits:  # would print as 0.0000: show its size instead
            return f"{v:.2e}"
        return f"{v:.{digits}f}"
    return str(v)


def md_cell(text: Any) -> str:
    """``text`` safe in a Markdown table cell: ``|`` (a column break) and ``<`` (raw HTML in most renderers)
    backslash-escaped, as CommonMark reads them (a domain named ``a|b.npz`` shifted every column after it)."""
    return str(text).replace("|", "\\|").replace("<", "\\<")


def md_cells(row: str) -> list[str]:
    """The cells of a Markdown table row, :func:`md_cell`'s escapes undone."""
    row = row.strip()
    row = row[1:] if row.startswith("|") else row
    row = row[:-1] if row.endswith("|") and not row.endswith("\\|") else row
    return [c.replace("\\|", "|").replace("\\<", "<").strip() for c in re.split(r"(?<!\\)\|", row)]


def _width(text: Any) -> int:
    """Columns ``text`` takes in a terminal: two for a wide (CJK) character, none for a combining mark."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 0 if unicodedata.combining(c) else 1
               for c in str(text))


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 4) -> str:
    """A Markdown table (readable on screen too); floats with ``digits`` decimals, None as '–'; text cells
    through :func:`md_cell`."""
    header = [md_cell(h) for h in header]
    cells = [[md_cell(fmt(v, digits)) for v in r] for r in rows]
    widths = [max(_width(h), *(_width(r[i]) for r in cells)) if cells else _width(h) for i, h in enumerate(header)]
    line = lambda r: "| " + " | ".join(str(c) + " " * (w - _width(c)) for c, w in zip(r, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in cells)])


_ARROW = re.compile(r"(\s*(?:→|->)\s*)")  # spaced or not: measure, advise and layers name pairs "a->b"
_FOLDER = re.compile(r"[/\\]")
_GLYPH = re.compile(r"Glyph (\d+) .*missing from font\(s\) (.*?)\.?$")
_missing_glyphs_said = False


def short_title(text: str, keep: int | None = None) -> str:
    """A figure title of data specs made shorter: each side of an arrow (``A → B``, ``A->B``) with its path as
    the file name (``npz:my data/x/src.npz?name=s`` -> ``npz:src.npz?name=s``; options stay whole), then, with
    ``keep``, cut to ``keep`` characters around a '…' (its start and its end stay)."""
    parts = _ARROW.split(text)
    for i in range(0, len(parts), 2):
        kind, colon, rest = parts[i].partition(":")
        path, q, options = rest.partition("?")  # (shifts, "+rot30", hold no slash)
        if colon and re.fullmatch(r"[a-z]+", kind) and _FOLDER.search(path):
            parts[i] = kind + ":" + _FOLDER.split(path)[-1] + q + options
        if keep is not None and len(parts[i]) > keep:
            head = (keep - 1) // 2
            parts[i] = parts[i][:head] + "…" + parts[i][len(parts[i]) - (keep - 1 - head):]
    return "".join(parts)


def _fit_title(text: Any, width: float, renderer: Any) -> None:
    """Shorten the title ``text`` (a matplotlib Text) until it is at most ``width`` display units wide:
    a long spec was cut at both edges of the figure."""
    full = text.get_text()
    if not full or text.get_window_extent(renderer).width <= width:
        return
    longest = max(len(p) for p in _ARROW.split(full)[::2])
    for keep in (None, *range(longest, 7, -max(1, longest // 12))):
        text.set_text(short_title(full, keep))
        if text.get_window_extent(renderer).width <= width:
            return


@contextlib.contextmanager
def _glyphs_noted() -> Iterator[None]:
    """matplotlib's "Glyph N missing from font(s) ..." (a warning per character, figure and drawing, each with
    a line of matplotlib's source) becomes one qianyi warning per process; other warnings pass as they were."""
    global _missing_glyphs_said
    with warnings.catch_warnings(record=True) as caught:
        yield
    missing, font = [], ""
    for w in caught:
        m = _GLYPH.match(str(w.message))
        if m is None:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
        else:
            missing.append(chr(int(m.group(1))))
            font = m.group(2)
    if missing and not _missing_glyphs_said:
        _missing_glyphs_said = True
        chars = "".join(dict.fromkeys(missing))
        warnings.warn(f"the figures' font ({font}) has no {chars!r}: those characters show as boxes in the PNG "
                      "figures (tables, CSV and HTML text show them); a matplotlibrc whose font.family lists a font "
                      "that has them after it (e.g. font.family: DejaVu Sans, Noto Sans CJK SC) draws them",
                      QianyiWarning, stacklevel=2)


def figure(figsize: tuple[float, float] = (6.0, 4.0)) -> Any:
    """A matplotlib Figure detached from pyplot: no backend is chosen or changed (PNG export works anywhere).
    Its texts are drawn as written: a ``$`` in a name (a file ``sales_$5_to_$10.npz``) is not read as matplotlib's
    math markup (two of them failed the plot). Titles too wide for their place are shortened (:func:`short_title`),
    and characters the font lacks give one qianyi warning, not matplotlib's warning per character and figure."""
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    class PlainFigure(Figure):
        def _plain(self, renderer: Any = None) -> None:
            for text in self.findobj(Text):
                text.set_parse_math(False)
            if renderer is None:
                return
            fig_width = self.bbox.width
            for ax in self.axes:
                if ax.get_visible() and ax.title.get_text():
                    middle = ax.bbox.x0 + ax.bbox.width / 2  # a title is centred on its axes, inside the figure
                    _fit_title(ax.title, min(1.1 * ax.bbox.width, 2 * min(middle, fig_width - middle)) - 4, renderer)
            sup = getattr(self, "_suptitle", None)
            if sup is not None and sup.get_text():
                _fit_title(sup, fig_width - 8, renderer)

        def draw(self, renderer: Any) -> None:
            with _glyphs_noted():
                self._plain(renderer)
                super().draw(renderer)

        def tight_layout(self, *args: Any, **kwargs: Any) -> None:
            with _glyphs_noted():
                self._plain()
                super().tight_layout(*args, **kwargs)

    return PlainFigure(figsize=figsize)


def subplots(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (6.0, 4.0), **kw: Any) -> tuple[Any, Any]:
    """Like ``plt.subplots`` but on a detached :func:`figure`."""
    fig = figure(figsize)
    return fig, fig.subplots(nrows, ncols, **kw)


def save_figure(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` as PNG atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return atomic_write(path, lambda fh: fh.write(buf.getvalue()), mode="wb")
