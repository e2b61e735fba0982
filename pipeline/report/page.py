"""The page's frame: its style, its sorting script and the Content-Security-Policy that lets only those two run."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib

from pipeline.report.charts import e

_STYLE = """
:root{color-scheme:light;--fg:#1d2430;--muted:#5b6472;--line:#d8dde5;--bad:#b3261e;--warn:#8a5a00;--ok:#1e6b35}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:#f6f7f9}
main{max-width:1120px;margin:0 auto;padding:12px}
h1{font-size:1.35rem;margin:.3rem 0}h2{font-size:1.1rem;margin:1.6rem 0 .5rem}h3{font-size:.95rem;margin:.8rem 0 .2rem}
section{background:#fff;border:1px solid var(--line);border-radius:6px;padding:10px 12px;margin:12px 0}
.meta,.none,.note{color:var(--muted);font-size:.88rem}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:8px}
.card{background:#fff;border:1px solid var(--line);border-radius:6px;padding:8px 10px}
.card b{display:block;font-size:1.35rem}.card span{color:var(--muted);font-size:.85rem}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(380px,1fr));gap:12px}
.chart{width:100%;height:auto;display:block}
.chart .grid{stroke:#e6e9ee;stroke-width:1}.chart .tick{font-size:12px;fill:var(--muted)}
.line{fill:none;stroke-width:1.8}.spark{width:100px;height:22px}
.legend{margin:.2rem 0;font-size:.85rem}.legend span{margin-right:12px;white-space:nowrap}
.key{width:10px;height:10px;margin-right:4px;vertical-align:-1px}
.scroll{overflow-x:auto}table.wide td:first-child{min-width:13em}table.wide td:nth-child(2){min-width:9em}.solo{max-width:560px}table.wide{min-width:860px}
table{border-collapse:collapse;width:100%;font-size:.88rem}
th,td{text-align:left;padding:4px 6px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:#eef1f5;position:sticky;top:0}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer;user-select:none}table.sortable th:after{content:" \\2195";color:#9aa3af}
.url{color:var(--muted);font-size:.8rem;word-break:break-all}
.bad{color:var(--bad);font-weight:600}.warn{color:var(--warn);font-weight:600}.ok{color:var(--ok)}
pre{white-space:pre-wrap;word-break:break-word;background:#f3f4f6;padding:6px;margin:4px 0;font-size:.8rem;max-height:12em;overflow:auto}
details{margin:.4rem 0}summary{cursor:pointer}
.c0{fill:#0072b2}.c1{fill:#e69f00}.c2{fill:#009e73}.c3{fill:#cc79a7}.c4{fill:#56b4e9}.c5{fill:#d55e00}.c6{fill:#f0e442}.c7{fill:#999}
.s0{stroke:#0072b2}.s1{stroke:#e69f00}.s2{stroke:#009e73}.s3{stroke:#cc79a7}.s4{stroke:#56b4e9}.s5{stroke:#d55e00}.s6{stroke:#f0e442}.s7{stroke:#999}
@media (max-width:600px){body{font-size:14px}main{padding:6px}section{padding:8px}.grid2{grid-template-columns:1fr}}
"""

# Click a header to sort by it (again to reverse). The page reads fine without it: the table is ordered already.
_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.tabIndex = 0;
    var sort = function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
      var key = function (row) {
        var cell = row.cells[col], v = cell.getAttribute("data-v");
        v = v === null ? cell.textContent.trim() : v;
        return v !== "" && !isNaN(v) ? Number(v) : v.toLowerCase();
      };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (typeof x !== typeof y) { return (typeof x === "number" ? -1 : 1) * dir; }
        return (x < y ? -1 : x > y ? 1 : 0) * dir;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    };
    th.addEventListener("click", sort);
    th.addEventListener("keydown", function (ev) { if (ev.key === "Enter") { sort(); } });
  });
});
"""


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


# Nothing loads from anywhere (default-src 'none'); only this page's own style and script, by hash, may apply.
_CSP = (
    f"default-src 'none'; style-src {_csp_hash(_STYLE)}; script-src {_csp_hash(_SCRIPT)}; img-src data:; "
    "base-uri 'none'; form-action 'none'"
)


def section(title: str, body: str, anchor: str) -> str:
    """One section of the page, with its heading and anchor."""
    return f'<section id="{anchor}"><h2>{e(title)}</h2>{body}</section>'


def page(output: str, now: dt.datetime, period: str, cards_html: str, sections: list[str]) -> str:
    """The whole page around its cards and sections: nothing loads from anywhere, only this style and script run."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{e(_CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer"><link rel="icon" href="data:,">'
        f"<title>newsbeam report: {e(output)}</title><style>{_STYLE}</style></head><body><main>"
        f'<h1>newsbeam report</h1><p class="meta">{e(output)} · {e(period)} · generated '
        f'{now:%Y-%m-%d %H:%M} UTC</p><div class="cards">{cards_html}</div>'
        + "".join(sections)
        + f"</main><script>{_SCRIPT}</script></body></html>\n"
    )
