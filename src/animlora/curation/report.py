"""dataset_report.html and its plots (matplotlib, Agg): what each character's set covers."""

from __future__ import annotations

import html
from collections import Counter
from pathlib import Path
from typing import Any

from animlora.io.files import atomic_path, atomic_write_text


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)


def _bar(ax: Any, counts: dict[str, int], title: str) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    names = list(counts)
    ax.bar(range(len(names)), [counts[n] for n in names], color="#4c78a8")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.set_title(title, fontsize=10)


def write_report(folder: Path, built: dict[str, Any], skipped: list[dict[str, Any]],
                 upstream: list[dict[str, Any]] | None = None, min_size: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """Plots and the HTML page; returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(built)
    files: list[str] = []
    for stale in folder.glob("report_samples_*.png"):  # a character built by an earlier run, not now
        if stale.name not in {f"report_samples_{_slug(n)}.png" for n in names}:
            stale.unlink(missing_ok=True)
    if not names:  # nothing built: the page still says who was skipped and what was left out
        atomic_write_text(folder / "dataset_report.html", _html(built, skipped, files, upstream or [], min_size))
        return {"html": "dataset_report.html", "plots": files}
    # 1. images, shots and videos per character
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    _bar(axes[0], {n: built[n]["count"] for n in names}, "images per character")
    _bar(axes[1], {n: built[n]["coverage"]["shots"] for n in names}, "shots covered")
    _bar(axes[2], {n: built[n]["coverage"]["videos"] for n in names}, "videos covered")
    _save(fig, folder / "report_characters.png")
    files.append("report_characters.png")
    # 2. framing and view distribution
    fig, axes = plt.subplots(len(names), 2, figsize=(10, 2.8 * len(names)), squeeze=False)
    for row, n in enumerate(names):
        _bar(axes[row][0], built[n]["distribution"]["framing"], f"{n}: framing")
        _bar(axes[row][1], built[n]["distribution"]["view"], f"{n}: view")
    fig.tight_layout()
    _save(fig, folder / "report_framing_view.png")
    files.append("report_framing_view.png")
    # 3. caption length
    fig, ax = plt.subplots(figsize=(6, 3))
    for n in names:
        ax.hist([r["caption_tokens"] for r in built[n]["images"]], bins=20, alpha=0.6, label=n)
    ax.set_xlabel("caption length (text-encoder tokens)")
    ax.legend(fontsize=8)
    _save(fig, folder / "report_caption_length.png")
    files.append("report_caption_length.png")
    # 4. sample grid with captions, per character
    for n in names:
        samples = built[n]["images"][:12]
        if not samples:
            continue
        cols = 4
        rows = (len(samples) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.6 * rows), squeeze=False)
        for ax in axes.ravel():
            ax.axis("off")
        for ax, rec in zip(axes.ravel(), samples, strict=False):
            path = folder / rec["file"]
            try:
                image = plt.imread(path)
            except (OSError, ValueError):
                continue
            if image.ndim == 3 and image.shape[2] == 4:  # show what alpha_mask trains on: grey outside
                alpha = image[..., 3:4]
                image = image[..., :3] * alpha + 0.5 * (1 - alpha)
            ax.imshow(image)
            ax.set_title(_wrap(rec["caption"], 38), fontsize=6.5, loc="left")
        fig.tight_layout()
        name = f"report_samples_{_slug(n)}.png"
        _save(fig, folder / name)
        files.append(name)
    atomic_write_text(folder / "dataset_report.html", _html(built, skipped, files, upstream or [], min_size))
    return {"html": "dataset_report.html", "plots": files}


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)[:5])


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def _html(built: dict[str, Any], skipped: list[dict[str, Any]], plots: list[str],
          upstream: list[dict[str, Any]], min_size: dict[str, Any] | None = None) -> str:
    e = html.escape
    rows = []
    for n in sorted(built):
        m = built[n]
        sources = Counter(r["caption_source"] for r in m["images"])
        rows.append(
            f"<tr><td>{e(n)}</td><td>{e(m['trigger'])}</td><td>{m['count']}</td><td>{m['candidates']}</td>"
            f"<td>{m['coverage']['shots']} / {m['coverage']['candidate_shots']}</td><td>{m['coverage']['videos']}</td>"
            f"<td>{e(m.get('status', 'ok'))}</td>"
            f"<td>{len(m['skipped'])}</td><td>{e(', '.join(f'{k}: {v}' for k, v in sources.items()))}</td>"
            f"<td>{e(m['selection']['features'])}</td></tr>"
        )
    left_out = "".join(_left_out_html(n, built[n]["skipped"]) for n in sorted(built))
    left_out += "".join(_left_out_html(f"{sk['character']} ({sk.get('status', 'no dataset')})", sk.get("left_out", []))
                        for sk in skipped)
    left_out += _left_out_html("before the datasets (in no character's set)", upstream)
    skipped_html = "".join(f"<li><b>{e(s['character'])}</b> ({e(s.get('status', 'no dataset'))}): {e(s['reason'])}</li>"
                           for s in skipped)
    rule = f"<p>{e(min_size['why'])}</p>" if min_size else ""
    cut = "".join(_cut_html(n, built[n]["images"]) for n in sorted(built))
    images = "".join(f'<h3>{e(p)}</h3><img src="{e(p)}" style="max-width:100%">' for p in plots)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>animlora dataset report</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{padding:4px 10px;border-bottom:1px solid #ddd}}</style>
</head><body>
<h1>Dataset report</h1>
<table><tr><th>character</th><th>trigger</th><th>images</th><th>candidates</th><th>shots (of available)</th>
<th>videos</th><th>status</th><th>left out</th><th>caption sources</th><th>diversity features</th></tr>
{''.join(rows)}</table>
<h2>Characters skipped</h2>{rule}<ul>{skipped_html or '<li>none</li>'}</ul>
<h2>Instances left out</h2>{left_out or '<p>none</p>'}
<h2>Images with another object's piece cut from the mask</h2>{cut or '<p>none</p>'}
{images}
</body></html>
"""


def _cut_html(title: str, images: list[dict[str, Any]]) -> str:
    """Every written image whose alpha had another object's piece cut (``piece_cut``), with why."""
    cut = [r for r in images if r.get("piece_cut")]
    if not cut:
        return ""
    e = html.escape
    rows = "".join(f"<li><code>{e(r['file'])}</code>: {e(r['piece_cut']['why'])}</li>" for r in cut)
    return f"<h3>{e(title)}: {len(cut)} of {len(images)}</h3><details><summary>images</summary><ul>{rows}</ul></details>"


def _left_out_html(title: str, skipped: list[dict[str, Any]]) -> str:
    """Counts per reason, then every left-out instance with its full reason."""
    if not skipped:
        return ""
    e = html.escape
    by_code: dict[str, list[dict[str, Any]]] = {}
    for sk in skipped:
        by_code.setdefault(sk.get("code") or sk["reason"].split(":")[0].split(" (")[0], []).append(sk)
    parts = [f"<h3>{e(title)}: {len(skipped)}</h3><ul>"]
    for code, items in sorted(by_code.items(), key=lambda kv: -len(kv[1])):
        rows = "".join(f"<li><code>{e(sk['instance'])}</code>: {e(sk['reason'])}</li>" for sk in items)
        parts.append(f"<li>{len(items)} × {e(code)}<details><summary>instances</summary><ul>{rows}</ul>"
                     f"</details></li>")
    parts.append("</ul>")
    return "".join(parts)
