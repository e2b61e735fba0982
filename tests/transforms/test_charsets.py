"""transforms.charsets: one list of BOMs and one reading of charset labels, for feeds and pages alike."""

import codecs

import pytest

from transforms.charsets import BOMS, choose_decoding, codec_name
from transforms.extract import decode_html

QUOTED = "“Curly” quotes – and 5 €"  # the characters windows-1252 puts in bytes 0x80-0x9F


@pytest.mark.parametrize(
    "label, codec",
    [
        ("ISO-8859-1", "cp1252"),
        ("latin1", "cp1252"),
        ("us-ascii", "cp1252"),
        ("windows-1252", "cp1252"),
        (" UTF-8 ", "utf-8"),
        ("utf-16be", "utf-16-be"),
        ("windows-1251", "cp1251"),
        ("no-such-charset", ""),
        ("", ""),
    ],
)
def test_codec_name(label, codec):
    assert codec_name(label) == codec


def test_a_feed_and_a_page_labelled_latin_1_read_windows_1252_alike():
    body = f"<p>{QUOTED}</p>".encode("cp1252")
    decoding = choose_decoding(body, "text/xml; charset=ISO-8859-1")
    assert decoding.decode(body) == f"<p>{QUOTED}</p>" and not decoding.repaired
    assert decode_html(body, "text/html; charset=ISO-8859-1") == (f"<p>{QUOTED}</p>", "cp1252")


def test_bytes_windows_1252_leaves_undefined_are_read_as_latin_1_not_refused():
    body = b"<p>caf\xe9 \x81</p>"  # 0x81: no character in Python's cp1252
    decoding = choose_decoding(body, "text/xml; charset=windows-1252")
    assert decoding.decode(body) == "<p>café \x81</p>" and not decoding.repaired


@pytest.mark.parametrize("bom, codec", BOMS)
def test_every_bom_wins_for_feeds_and_pages(bom, codec):
    body = bom + "<p>Zürich</p>".encode(codec)
    decoding = choose_decoding(body, "text/xml; charset=windows-1251")
    assert (decoding.codec, decoding.decode(body), decoding.repaired) == (codec, "<p>Zürich</p>", True)
    assert decode_html(body, "text/html; charset=windows-1251") == ("<p>Zürich</p>", codec)


def test_utf16_big_endian_declared_without_a_bom_is_read_big_endian():
    body = '<?xml version="1.0" encoding="UTF-16BE"?><rss/>'.encode("utf-16-be")
    decoding = choose_decoding(body, "application/xml; charset=UTF-16BE")
    assert decoding.decode(body).endswith("<rss/>") and not decoding.repaired


def test_the_boms_are_longest_first():
    # The UTF-32 LE BOM starts with the UTF-16 LE one: checked first, or UTF-32 would be read as UTF-16.
    assert codecs.BOM_UTF32_LE.startswith(codecs.BOM_UTF16_LE)
    assert [b for b, _ in BOMS].index(codecs.BOM_UTF32_LE) < [b for b, _ in BOMS].index(codecs.BOM_UTF16_LE)
