"""The article body of a parsed page as plain text: `extract_body(tree, url)`, which `extract_page` calls on the
tree transforms/page_html.py parsed once (and read the metadata from).

trafilatura extracts the body (fast mode, comments off). Around it, four steps, each chosen on one half of the
Article Extraction Benchmark and judged on the other half and on Mozilla Readability's test pages
(`python benchmarks/extract.py`; the figures are in the README, "Full article text"):

- `prune`: elements that never hold article text are removed in C before trafilatura's many XPath passes walk the
  tree. For speed only: trafilatura's own cleaning removes them too (see NEVER_TEXT).
- `unwrap_lines`: line breaks of the HTML source inside a text become spaces, as a browser shows them. trafilatura
  keeps them, and a paragraph whose HTML was hard-wrapped came out as one paragraph per source line.
- `join_split_body`: an article body split into sibling chunks of one class (a layout that puts an advert or a
  newsletter box between the parts) is joined into its first chunk. trafilatura takes the first element that looks
  like a body and nothing after it, so every paragraph after the first break was lost.
- `restore_repeats`: a paragraph the page shows several times in one container is kept as many times. trafilatura
  keeps one copy of identical paragraphs (it takes repeats for its own overlapping candidates).

Fast mode skips trafilatura's second opinions (readability and jusText) when the main pass comes up short. Measured
with the steps above in place, neither they nor readability alone (asked when the body is under 15% of the page's
visible text) gained on both sets, so they stay off.
"""

from __future__ import annotations

import re
from collections import Counter

import lxml.etree
import lxml.html

# Removed before extraction. JSON-LD scripts stay: trafilatura's baseline reads articleBody from them. Every other
# element here is one trafilatura's cleaning deletes anyway (settings.MANUALLY_CLEANED), plus `meta` and `template`
# (never visible text); a page whose body text sits in one of them (a pull quote in an <aside>, state in a script)
# loses nothing trafilatura would have kept.
NEVER_TEXT = (
    "style",
    "noscript",
    "svg",
    "template",
    "link",
    "meta",
    "iframe",
    "canvas",
    "video",
    "audio",
    "picture",
    "source",
    "object",
    "embed",
    "select",
    "button",
    "input",
    "textarea",
    "aside",
    "footer",
    "menu",
    "nav",
    "applet",
    "map",
    "area",
    "blink",
    "datalist",
    "dialog",
    "frame",
    "frameset",
    "label",
    "marquee",
    "noindex",
    "optgroup",
    "option",
    "output",
    "param",
    "progress",
    "rp",
    "rt",
    "rtc",
    "track",
    "use",
)

# A chunk of a split body holds at least this many paragraphs of its own (direct <p> children with text): a teaser
# card or a caption box holds fewer, so a list of cards is not joined into one.
CHUNK_PARAGRAPHS = 2
_CHUNK_TAGS = ("div", "section", "article")

# Repeats shorter than this are not restored: on the tuning half, restoring repeated lines from 50 characters up
# brought back photo credits and captions (precision fell); from 100 up it changed nothing there.
REPEAT_MIN_CHARS = 100
_BLOCKS = frozenset(
    ("p", "div", "li", "blockquote", "pre", "td", "th", "dd", "dt", "h1", "h2", "h3", "h4", "h5", "h6", "section")
)


def prune(tree: lxml.html.HtmlElement) -> None:
    """Removes, in place, the elements that never hold article text (see NEVER_TEXT)."""
    lxml.etree.strip_elements(tree, *NEVER_TEXT, with_tail=False)
    for script in list(tree.iter("script")):
        if (script.get("type") or "").strip().lower() != "application/ld+json":
            script.drop_tree()


# Source line breaks inside a text are spaces, as a browser shows them (white-space: normal). Not inside pre/code.
_SOURCE_BREAKS = re.compile(r"[ \t\r\n\f]*[\r\n][ \t\r\n\f]*")
_PREFORMATTED = ("pre", "code", "textarea", "listing", "plaintext", "xmp")
# Found in C: the texts with a line break and something besides whitespace (indentation between tags is harmless).
# libxml2 has turned CR LF and CR into LF while parsing.
_WRAPPED_TEXTS = lxml.etree.XPath("//text()[contains(., '\n')][normalize-space()]")


def unwrap_lines(tree: lxml.html.HtmlElement) -> None:
    """Turns, in place, the line breaks of the HTML source inside texts into spaces (preformatted text excepted)."""
    preformatted = next(tree.iter(*_PREFORMATTED), None) is not None
    for found in _WRAPPED_TEXTS(tree):
        owner = found.getparent()  # the element whose .text or .tail this is
        container = owner.getparent() if found.is_tail else owner
        if (
            preformatted
            and container is not None
            and (container.tag in _PREFORMATTED or next(container.iterancestors(*_PREFORMATTED), None) is not None)
        ):
            continue
        if found.is_tail:
            owner.tail = _SOURCE_BREAKS.sub(" ", owner.tail)
        else:
            owner.text = _SOURCE_BREAKS.sub(" ", owner.text)


def _own_paragraphs(element: lxml.html.HtmlElement) -> int:
    count = 0
    for child in element:
        if child.tag == "p" and child.text_content().strip():
            count += 1
            if count >= CHUNK_PARAGRAPHS:
                break
    return count


def _append_text(parent: lxml.html.HtmlElement, text: str) -> None:
    if len(parent):
        parent[-1].tail = (parent[-1].tail or "") + text
    else:
        parent.text = (parent.text or "") + text


def join_split_body(tree: lxml.html.HtmlElement) -> int:
    """Joins, in place, the chunks of a body split into elements of one tag and class attribute (each with at least
    CHUNK_PARAGRAPHS paragraphs of its own) into the first chunk, in page order; returns how many were moved.

    What stood between the chunks (the advert, the newsletter box) stays where it was, outside the joined body.
    """
    groups: dict[tuple[str, str], list[lxml.html.HtmlElement]] = {}
    for element in tree.iter(*_CHUNK_TAGS):
        css = (element.get("class") or "").strip()
        if css and _own_paragraphs(element) >= CHUNK_PARAGRAPHS:
            groups.setdefault((element.tag, css), []).append(element)
    moved = 0
    for chunks in groups.values():
        first = chunks[0]
        for chunk in chunks[1:]:
            if any(ancestor is first for ancestor in chunk.iterancestors()):
                continue  # nested in the first chunk (or in one already joined to it): already part of it
            if chunk.text and chunk.text.strip():
                _append_text(first, chunk.text)
            first.extend(list(chunk))  # moves the children, their tails with them
            if chunk.tail and chunk.tail.strip():
                chunk.tail = "\n" + chunk.tail  # the chunk was a block: its tail must not run into the text before it
            chunk.drop_tree()  # keeps the chunk's own tail in its old place
            moved += 1
    return moved


def _normal(text: str) -> str:
    return " ".join(text.split())


def _hidden(element: lxml.html.HtmlElement) -> bool:
    """Whether the element or an ancestor is hidden from the reader (the `hidden` attribute or display:none)."""
    for node in (element, *element.iterancestors()):
        if node.get("hidden") is not None or "display:none" in (node.get("style") or "").replace(" ", "").lower():
            return True
    return False


def restore_repeats(paragraphs: list[str], tree: lxml.html.HtmlElement) -> list[str]:
    """The paragraphs with each one the page shows n times in one container (n identical visible blocks of at least
    REPEAT_MIN_CHARS characters under one parent) kept n times: the missing copies follow its last copy."""
    wanted = {_normal(p) for p in paragraphs if len(p) >= REPEAT_MIN_CHARS}
    if wanted:  # a cheap first look (in C): only paragraphs found twice in the page's text can be repeated blocks
        body = tree.find("body")
        page = _normal((tree if body is None else body).text_content())
        wanted = {text for text in wanted if page.count(text) > 1}
    if not wanted:
        return paragraphs
    # Keyed by the parent element itself: lxml makes a new proxy object per access, so id() of one is not stable.
    on_page: dict[tuple[str, lxml.html.HtmlElement], list[lxml.html.HtmlElement]] = {}
    for element in tree.iter(*_BLOCKS):
        if any(child.tag in _BLOCKS for child in element):
            continue  # only the innermost blocks: an enclosing <div> repeats nothing by itself
        text = _normal(element.text_content())
        if text in wanted:
            on_page.setdefault((text, element.getparent()), []).append(element)
    shown: Counter = Counter()
    for (text, _), elements in on_page.items():
        if len(elements) > 1:
            shown[text] = max(shown[text], sum(not _hidden(element) for element in elements))
    if not shown:
        return paragraphs
    kept = Counter(_normal(p) for p in paragraphs)
    seen: Counter = Counter()
    out = []
    for paragraph in paragraphs:
        out.append(paragraph)
        text = _normal(paragraph)
        seen[text] += 1
        if seen[text] == kept[text] and shown[text] > kept[text]:
            out.extend([paragraph] * (shown[text] - kept[text]))
    return out


def extract_body(tree: lxml.html.HtmlElement, url: str = "") -> str:
    """The article body of a parsed (and pruned) page as plain text, paragraphs separated by blank lines ('' when
    none). The tree is changed (lines unwrapped, split bodies joined); trafilatura works on a copy of it."""
    import trafilatura  # imported here: loading it costs about a second, paid only by runs that extract

    unwrap_lines(tree)
    join_split_body(tree)
    text = trafilatura.extract(tree, url=url or None, fast=True, include_comments=False, output_format="txt")
    if not text:
        return ""
    # trafilatura puts one paragraph per line; our articles separate paragraphs with a blank line.
    paragraphs = [line.strip() for line in text.split("\n") if line.strip()]
    return "\n\n".join(restore_repeats(paragraphs, tree))
