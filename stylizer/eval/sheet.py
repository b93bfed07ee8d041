"""The HTML report: a self-contained page with summary tables, charts and a contact sheet per setting.

Images are linked by relative paths, so the report folder can be moved or zipped as a whole.
Every piece of text from the user (prompts, file names, settings) is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from . import judge
from .tables import LABELS, SECONDS, Row, group_means

THUMB_PX = 176
# Short names for the captions under each picture.
SHORT = {
    judge.CLIP_SCORE: "CLIP",
    judge.DIRECTIONAL: "dir",
    judge.PATCH_CLIP_SCORE: "patch",
    judge.SSIM: "SSIM",
    judge.VGG_DISTANCE: "VGG",
    judge.LPIPS: "LPIPS",
    SECONDS: "sec",
}
GLOSSARY = {
    judge.CLIP_SCORE: "cosine between the output's CLIP image embedding and the prompt's text embedding "
    "(averaged over the guide's prompt templates); the papers' “CLIP similarity”.",
    judge.DIRECTIONAL: "cosine between the image change (output − content) and the text change "
    "(prompt − reference) in CLIP space; 1 means the image moved exactly towards the style.",
    judge.PATCH_CLIP_SCORE: "mean CLIP score of random crops of the output (a quarter of the short side, fixed seed): "
    "is the style present locally, not only globally.",
    judge.SSIM: "structural similarity to the content image (11×11 gaussian window, σ 1.5, per channel); 1 is identical.",
    judge.VGG_DISTANCE: "LPIPS-like distance without learned weights: squared distance of channel-normalised "
    "VGG16 conv4_2/conv5_2 features, averaged; 0 is identical. Not LPIPS.",
    judge.LPIPS: "learned perceptual distance (LPIPS, VGG) to the content image; 0 is identical.",
    SECONDS: "wall-clock seconds to stylize one image (models already loaded).",
}
# What the page's header shows: (label, meta key).
FACTS = (
    ("model", "model"),
    ("guide CLIP", "guide_clip"),
    ("judge CLIP", "judge_clip"),
    ("device", "device"),
    ("runs", "runs"),
    ("created", "created"),
)
STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem; color: #222; background: #fafafa; }
h1 { margin-bottom: .2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
.meta { color: #555; } .warn { background: #fff4d6; border: 1px solid #e8c66a; padding: .5rem .8rem; border-radius: 4px; }
table { border-collapse: collapse; margin: .6rem 0; background: #fff; }
th, td { border: 1px solid #e2e2e2; padding: .3rem .55rem; vertical-align: top; }
th { background: #f0f0f0; font-weight: 600; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.sheet td { padding: .4rem; } .sheet th { max-width: %(thumb)dpx; }
figure { margin: 0; } .sheet img { width: %(thumb)dpx; height: auto; display: block; image-rendering: auto; }
figcaption { font: 11px/1.35 ui-monospace, SFMono-Regular, Menlo, monospace; color: #444; margin-top: .25rem; }
.charts img { max-width: 100%%; border: 1px solid #e2e2e2; background: #fff; margin: .4rem .6rem .4rem 0; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2rem .8rem; } dt { font-weight: 600; } dd { margin: 0; }
""" % {"thumb": THUMB_PX}  # noqa: UP031 (CSS is full of braces: printf-style keeps it readable)


def render(rows: Sequence[Row], meta: Mapping[str, Any], metrics: Sequence[str], charts: Sequence[str]) -> str:
    """The whole page.

    Args:
        rows: report rows (see :func:`stylizer.eval.runner.run_grid`).
        meta: run facts: model, guide and judge CLIP, device, untrained flag, base settings,
            and optionally ``lpips_skipped`` (a :class:`stylizer.eval.judge.Skipped` as a dict).
        metrics: the metric columns, seconds included, in display order.
        charts: chart file names relative to the page.
    """
    e = html.escape
    facts = " · ".join(f"{e(name)} <b>{e(str(meta[key]))}</b>" for name, key in FACTS)
    base = ", ".join(f"{k}={v}" for k, v in meta["base"].items()) or "none"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Stylizer evaluation: {e(str(meta['model']))}</title><style>{STYLE}</style></head><body>",
        "<h1>Stylizer evaluation</h1>",
        f'<p class="meta">{facts}</p>',
    ]
    if meta.get("untrained"):
        parts.append(
            f'<p class="warn"><b>{e(str(meta["model"]))}</b> has random weights: these numbers test the harness, not the method.</p>'
        )
    skipped = meta.get("lpips_skipped")
    if skipped:
        parts.append(f'<p class="{"warn" if skipped["failure"] else "meta"}">{e(skipped["note"])}</p>')
    parts += [
        f'<p class="meta">settings for every job: <code>{e(base)}</code>; the rest at StyleConfig\'s defaults</p>',
        "<h2>Summary</h2>",
        "<h3>Means per setting</h3>",
        _means_table(rows, "setting", metrics),
        "<h3>Means per prompt</h3>",
        _means_table(rows, "prompt", metrics),
        '<div class="charts">',
        *(f'<a href="{_src(c)}"><img src="{_src(c)}" alt="{e(c)}"></a>' for c in charts),
        "</div>",
    ]
    for setting in dict.fromkeys(row["setting"] for row in rows):
        parts += [f"<h2>Contact sheet: {e(setting)}</h2>", _sheet([r for r in rows if r["setting"] == setting], metrics)]
    parts += ["<h2>Metrics</h2>", "<dl>"]
    parts += [f"<dt>{e(LABELS[m])}</dt><dd>{e(GLOSSARY[m])}</dd>" for m in metrics]
    parts += ["</dl>", "</body></html>", ""]
    return "\n".join(parts)


def _means_table(rows: Sequence[Row], key: str, metrics: Sequence[str]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(LABELS[m])}</th>" for m in metrics)
    body = "".join(
        f"<tr><td>{e(name)}</td>" + "".join(f'<td class="num">{_fmt(means[m])}</td>' for m in metrics) + "</tr>"
        for name, means in group_means(rows, key, metrics).items()
    )
    return f"<table><tr><th>{e(key)}</th>{head}</tr>{body}</table>"


def _sheet(rows: Sequence[Row], metrics: Sequence[str]) -> str:
    """Rows of content image then one result per prompt, with the metrics under each result."""
    e = html.escape
    prompts = list(dict.fromkeys(row["prompt"] for row in rows))
    lines = ['<table class="sheet"><tr><th>content</th>' + "".join(f"<th>{e(p)}</th>" for p in prompts) + "</tr>"]
    for image in dict.fromkeys(row["image"] for row in rows):
        results = {row["prompt"]: row for row in rows if row["image"] == image}
        first = next(iter(results.values()))
        cells = [_figure(first["content"], image, e(image))]
        for prompt in prompts:
            row = results.get(prompt)  # absent only for a partial grid
            caption = "<br>".join(f"{SHORT[m]} {_fmt(row[m])}" for m in metrics) if row else ""
            cells.append(_figure(row["output"], f"{image} · {prompt}", caption) if row else "")
        lines.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _figure(path: str, title: str, caption_html: str) -> str:
    src, title = _src(path), html.escape(title)
    image = f'<img src="{src}" alt="{title}" title="{title}" loading="lazy">'
    return f'<figure><a href="{src}">{image}</a><figcaption>{caption_html}</figcaption></figure>'


def _src(path: str) -> str:
    """A relative path as an escaped URL attribute value."""
    return html.escape(quote(path))


def _fmt(value: float) -> str:
    return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
