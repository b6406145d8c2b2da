"""The report's blocks as one self-contained HTML page (images inlined) and as Markdown.

The HTML makes no network request: no scripts, fonts or stylesheets from anywhere, every
image a data: URI, so the file can be mailed or opened offline.
"""

from __future__ import annotations

import base64
import html
import os
import re
from pathlib import Path

from freezetune.report.document import Block

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child, td:last-child { text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; border: 1px solid #eee; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
"""


def _inline(text: str) -> str:
    """Escape, then **bold** and *italic* as Markdown writes them."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"\*(.+?)\*", r"<em>\1</em>", text)


def to_html(blocks: list[Block], title: str) -> str:
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
             f"<style>{STYLE}</style></head><body>"]
    first = True
    for block in blocks:
        if block.kind == "heading":
            tag = "h1" if first else "h2"
            parts.append(f"<{tag}>{html.escape(block.text)}</{tag}>")
            first = False
        elif block.kind == "paragraph":
            parts.append(f"<p>{_inline(block.text)}</p>")
        elif block.kind == "bullets":
            parts.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block.items) + "</ul>")
        elif block.kind == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in block.headers)
            body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in block.rows)
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif block.kind == "image" and block.path is not None:
            data = base64.b64encode(Path(block.path).read_bytes()).decode()
            parts.append(f"<p><img alt=\"{html.escape(block.text)}\" src=\"data:image/png;base64,{data}\"></p>")
        elif block.kind == "pre":
            parts.append(f"<pre>{html.escape(block.text)}</pre>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def to_markdown(blocks: list[Block], folder: Path) -> str:
    """Markdown beside the report: images linked relative to ``folder``."""
    lines: list[str] = []
    first = True
    for block in blocks:
        if block.kind == "heading":
            lines += [("# " if first else "## ") + block.text, ""]
            first = False
        elif block.kind == "paragraph":
            lines += [block.text, ""]
        elif block.kind == "bullets":
            lines += [f"- {item}" for item in block.items] + [""]
        elif block.kind == "table":
            lines.append("| " + " | ".join(block.headers) + " |")
            lines.append("|" + "|".join("---" for _ in block.headers) + "|")
            lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in block.rows]
            lines.append("")
        elif block.kind == "image" and block.path is not None:
            lines += [f"![{block.text}]({Path(os.path.relpath(block.path, folder)).as_posix()})", ""]
        elif block.kind == "pre":
            lines += ["```", block.text, "```", ""]
    return "\n".join(lines)
