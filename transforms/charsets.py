"""Charsets: how a document's bytes become text, shared by the feed readers and the page extractor.

- `BOMS`: the byte order marks, longest first (the UTF-32 LE BOM starts with the UTF-16 LE one). A BOM wins over
  any declaration.
- `codec_name(label)`: the Python codec of a charset label. The labels ISO-8859-1, Latin-1 and US-ASCII mean
  windows-1252, as in the WHATWG Encoding Standard that browsers and feed readers follow: servers and CMSs label
  windows-1252 text (curly quotes, dashes, the euro sign in bytes 0x80-0x9F) that way far more often than they send
  C1 control characters, which is what Latin-1 would make of those bytes.
- `choose_decoding(body, content_type)`: how to read a feed document (transforms/readers/), by its BOM, its
  declarations and the evidence of its bytes. The page extractor's `decode_html` (transforms/extract.py) has
  orders of its own (a `<meta charset>` tag) over the same BOMS and codec_name.
"""

from __future__ import annotations

import codecs
import dataclasses
import re

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


def _decodes(body: bytes, codec: str) -> bool:
    try:
        body.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return False
    return True


def choose_decoding(body: bytes, content_type: str = "") -> Decoding | None:
    """How to decode a document, by its declarations and the evidence of its bytes; None when nothing decodes.

    A BOM wins over the declarations; otherwise the Content-Type charset, then the XML declaration, then UTF-8. A
    declaration the bytes contradict (a strict decode fails, or a BOM says otherwise) gives way to the evidence
    (another declaration, mostly-UTF-8, or charset detection) and the result is `repaired`.
    """
    bom_length = next((len(bom) for bom, _ in BOMS if body.startswith(bom)), 0)
    declared = [
        codec for codec in (codec_name(_charset(content_type)), codec_name(_xml_declared(body[bom_length:]))) if codec
    ]
    for bom, codec in BOMS:
        if body.startswith(bom):
            if _decodes(body[len(bom) :], codec):
                disagrees = [name for name in declared if _family(name) != _family(codec)]
                note = f"BOM says {codec}, declared {disagrees[0]}" if disagrees else ""
                return Decoding(codec, len(bom), repaired=bool(disagrees), note=note)
            break
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
    text = body.decode("utf-8", "replace")
    bad = text.count("\ufffd")
    good = len(_NON_ASCII.findall(text)) - bad
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


def _detect(body: bytes) -> str:
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # requests brings it; without it, there is simply no detection
        return ""
    best = from_bytes(body[:200_000]).best()
    return best.encoding if best is not None else ""


def _xml_declared(body: bytes) -> str:
    match = _XML_DECLARED.match(body[:512])
    return match.group(1).decode("ascii") if match else ""


def _charset(content_type: str) -> str:
    match = re.search(r"charset=[\"']?([\w.:-]+)", content_type or "", re.I)
    return match.group(1) if match else ""
