"""Charsets: how a document's bytes become text, shared by the feed readers and the page extractor.

- `BOMS`: the byte order marks, longest first (the UTF-32 LE BOM starts with the UTF-16 LE one). A BOM wins over
  any declaration.
- `codec_name(label)`: the Python codec of a charset label. The labels ISO-8859-1, Latin-1 and US-ASCII mean
  windows-1252, as in the WHATWG Encoding Standard that browsers and feed readers follow: servers and CMSs label
  windows-1252 text (curly quotes, dashes, the euro sign in bytes 0x80-0x9F) that way far more often than they send
  C1 control characters, which is what Latin-1 would make of those bytes.
- `utf8_overrules(body, declared)`: whether a charset a document declares in its own markup (`<meta charset>`,
  `<?xml encoding>`) gives way to its bytes, which are UTF-8 all the same. A BOM or an HTTP charset is never
  overruled: those are the server's word, the markup's is often copied from an old template.
- `choose_decoding(body, content_type)`: how to read a feed document (transforms/readers/), by its BOM, its
  declarations and the evidence of its bytes. The body may be a spooled file (transforms/spool.py): every test of
  the bytes then runs a chunk at a time, and gives what it gives on the same bytes in memory.
- `decode_html(body, content_type)`: an HTML page as text (transforms/page_html.py), by its BOM, its declarations
  (a `<meta charset>` tag among them) and the evidence of its bytes.
"""

from __future__ import annotations

import codecs
import dataclasses
import re
import sys
from collections.abc import Iterator

from transforms import spool
from transforms.spool import Body

BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# Python's canonical names of the labels that mean windows-1252 (see the module docstring).
_READ_AS_WINDOWS_1252 = frozenset({"iso8859-1", "ascii"})
# Python's cp1252 refuses the five bytes windows-1252 leaves undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D), which the
# WHATWG decoder maps to the same code points as Latin-1: a document cp1252 cannot read is read as Latin-1 then.
_WINDOWS_1252 = ("cp1252", "iso8859-1")


def codec_name(label: str) -> str:
    """The canonical name of the Python codec for a charset label ('' when Python has none); the labels that mean
    windows-1252 give `cp1252`."""
    try:
        name = codecs.lookup(label.strip()).name
    except (LookupError, ValueError, AttributeError):
        return ""
    return "cp1252" if name in _READ_AS_WINDOWS_1252 else name


def _family(codec: str) -> str:
    """A codec with its BOM-less byte orders folded together: what a BOM and a declaration must agree on."""
    return {
        "utf-8-sig": "utf-8",
        "utf-16-le": "utf-16",
        "utf-16-be": "utf-16",
        "utf-32-le": "utf-32",
        "utf-32-be": "utf-32",
        "iso8859-1": "cp1252",
    }.get(codec, codec)


_XML_DECLARED = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


@dataclasses.dataclass(frozen=True)
class Decoding:
    """How to read a document's bytes: `codec` (a Python codec name), `errors`, and whether it was repaired."""

    codec: str
    bom: int = 0  # bytes of BOM to skip
    errors: str = "strict"
    repaired: bool = False
    note: str = ""

    def decode(self, body: bytes) -> str:
        """The document's text."""
        return body[self.bom :].decode(self.codec, self.errors)

    def decode_chunks(self, body: Body) -> Iterator[str]:
        """The document's text a piece at a time (the same text as `decode`, for a body too big to hold)."""
        return _iterdecode(spool.after(body, self.bom), self.codec, self.errors)


def _iterdecode(body: Body, codec: str, errors: str = "strict") -> Iterator[str]:
    """The text of `body`: in one piece when it is in memory (what it always was), a chunk at a time when spooled."""
    if isinstance(body, bytes):
        yield body.decode(codec, errors)
        return
    if not getattr(codecs.lookup(codec), "_is_text_encoding", True):
        # bytes.decode refuses base64, zlib and the like by this mark (CPython's text-encoding lookup); so do we.
        raise LookupError(f"{codec} is not a text encoding")
    if codec in _NATIVE_WITHOUT_BOM and not any(body.head(4).startswith(bom) for bom, _ in BOMS):
        # bytes.decode("utf-16") reads a text without a BOM in the machine's byte order; the incremental decoder
        # refuses it instead.
        codec = _NATIVE_WITHOUT_BOM[codec]
    # An incremental decoder gives, piece by piece, what one decode of the whole would: a character cut by a
    # chunk's end waits for the next chunk, and `final` raises (or replaces) what is left unfinished.
    decoder = codecs.getincrementaldecoder(codec)(errors)
    for part in body.chunks():
        yield decoder.decode(part)
    yield decoder.decode(b"", final=True)


_NATIVE_WITHOUT_BOM = {
    "utf-16": "utf-16-le" if sys.byteorder == "little" else "utf-16-be",
    "utf-32": "utf-32-le" if sys.byteorder == "little" else "utf-32-be",
}


def _decodes(body: Body, codec: str) -> bool:
    try:
        for _ in _iterdecode(body, codec):
            pass
    except (UnicodeError, LookupError):  # UnicodeError: what some incremental decoders raise instead
        return False
    return True


def _isascii(body: Body) -> bool:
    return all(part.isascii() for part in spool.chunks(body))


def utf8_overrules(body: Body, declared: str) -> bool:
    """True when a document whose own markup declares the codec `declared` is to be read as UTF-8 all the same: its
    bytes are not all ASCII and decode cleanly as UTF-8, and `declared` is another charset.

    Text in a legacy charset (GB2312, Shift_JIS, windows-1251, windows-1252...) that is not plain ASCII is almost
    never valid UTF-8 as well: its high bytes do not fall into UTF-8's lead-and-continuation pattern for long. A
    page re-encoded to UTF-8 while its template kept the old `<meta charset>` is common (a qq.com page in
    ../shared/data/extraction-dev-2 declares gb2312 in UTF-8 bytes). Browsers follow the meta tag (WHATWG encoding
    sniffing) and show such a page garbled; a reader of the text has no reason to. Pure-ASCII bytes read the same
    either way, and bytes that are not valid UTF-8 keep the declared charset.
    """
    if not declared or _family(declared) == "utf-8" or _isascii(body):
        return False
    return _decodes(body, "utf-8")


def choose_decoding(body: Body, content_type: str = "") -> Decoding | None:
    """How to decode a document, by its declarations and the evidence of its bytes; None when nothing decodes.

    A BOM wins over the declarations; otherwise the Content-Type charset, then the XML declaration (unless the
    bytes are UTF-8 all the same: `utf8_overrules`), then UTF-8. A declaration the bytes contradict (a strict decode
    fails, or a BOM says otherwise) gives way to the evidence (another declaration, mostly-UTF-8, or charset
    detection) and the result is `repaired`.
    """
    start = spool.head(body, 4)  # the longest BOM
    bom_length = next((len(bom) for bom, _ in BOMS if start.startswith(bom)), 0)
    header = codec_name(_charset(content_type))
    xml = codec_name(_xml_declared(spool.head(body, bom_length + 512)[bom_length:]))
    declared = [codec for codec in (header, xml) if codec]
    for bom, codec in BOMS:
        if start.startswith(bom):
            if _decodes(spool.after(body, len(bom)), codec):
                disagrees = [name for name in declared if _family(name) != _family(codec)]
                note = f"BOM says {codec}, declared {disagrees[0]}" if disagrees else ""
                return Decoding(codec, len(bom), repaired=bool(disagrees), note=note)
            break
    if not header and utf8_overrules(body, xml):
        return Decoding("utf-8", repaired=True, note=f"declared {xml}, bytes are UTF-8")
    candidates: list[str] = []
    for codec in [*declared, "utf-8"]:
        candidates += _WINDOWS_1252 if codec == "cp1252" else [codec]
    candidates = list(dict.fromkeys(candidates))
    first = candidates[0]
    for codec in candidates:
        if _decodes(body, codec):
            repaired = _family(codec) != _family(first)
            return Decoding(codec, repaired=repaired, note=f"declared {first}, decodes as {codec}" if repaired else "")
    # Mostly UTF-8 with a few bad bytes: keep the good text rather than guess a single-byte charset for it all.
    bad = good = 0
    for text in _iterdecode(body, "utf-8", "replace"):
        bad += text.count("\ufffd")
        good += len(_NON_ASCII.findall(text))
    good -= bad
    if good > bad:
        return Decoding("utf-8", errors="replace", repaired=True, note=f"{bad} invalid UTF-8 sequences replaced")
    detected = codec_name(_detect(body))
    if detected in _LATIN_SINGLE_BYTE and _decodes(body, "cp1252"):
        # Detectors split hairs between Latin code pages on short texts; windows-1252 is what such pages are.
        detected = "cp1252"
    if detected and _decodes(body, detected):
        return Decoding(detected, repaired=True, note=f"declared {first}, bytes read as {detected}")
    return None


_LATIN_SINGLE_BYTE = {
    codec_name(name)
    for name in (
        "latin-1",
        "iso8859-2",
        "iso8859-3",
        "iso8859-4",
        "iso8859-9",
        "iso8859-10",
        "iso8859-13",
        "iso8859-14",
        "iso8859-15",
        "iso8859-16",
        "cp1250",
        "cp1252",
        "cp1254",
        "cp1257",
        "mac-roman",
        "mac-latin2",
        "cp437",
        "cp850",
    )
}


def _detect(body: Body, sample: int = 200_000) -> str:
    """The charset charset_normalizer reads in the first `sample` bytes, '' when none."""
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # requests brings it; without it, there is simply no detection
        return ""
    best = from_bytes(spool.head(body, sample)).best()
    return best.encoding if best is not None else ""


def _xml_declared(body: bytes) -> str:
    match = _XML_DECLARED.match(body[:512])
    return match.group(1).decode("ascii") if match else ""


_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([\w.:-]+)""", re.IGNORECASE)


def _charset(content_type: str) -> str:
    """The charset label of a Content-Type header, '' when it names none."""
    match = _HEADER_CHARSET.search(content_type or "")
    return match.group(1) if match else ""


_META_CHARSET = re.compile(rb"""<meta[^>]+?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)
# The meta tag must come early (HTML5 says within the first 1024 bytes; pages with long heads put it later).
_META_SCAN_BYTES = 4096


def decode_html(body: bytes, content_type: str = "") -> tuple[str, str]:
    """An HTML page as text, and the codec used.

    The charset is taken from a byte order mark, else the Content-Type header, else a `<meta charset>` /
    `http-equiv` tag near the top (unless the bytes are UTF-8 all the same: `utf8_overrules`), else UTF-8 if the
    bytes are valid UTF-8, else detection (charset_normalizer). Never raises: bytes the codec cannot read are
    replaced.
    """
    for bom, name in BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(name, "replace"), name
    name = codec_name(_charset(content_type))
    if not name:
        meta = _META_CHARSET.search(body, 0, _META_SCAN_BYTES)
        name = codec_name(meta.group(1).decode("ascii")) if meta else ""
        # A meta tag readable as ASCII cannot be in UTF-16: the tag is wrong, as is one the bytes overrule.
        if name.startswith("utf-16") or utf8_overrules(body, name):
            name = ""
    if name:
        return body.decode(name, "replace"), name
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    # Only pages that are neither declared nor UTF-8 pay for detection.
    name = codec_name(_detect(body, 65536)) or "cp1252"
    return body.decode(name, "replace"), name
