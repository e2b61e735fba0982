"""transforms.charsets: one list of BOMs, one reading of charset labels and one rule for a declaration the bytes
overrule, for feeds (choose_decoding) and pages (decode_html) alike."""

import codecs
import gzip
from pathlib import Path

import pytest

from tests.transforms.sample_pages import RUSSIAN
from transforms.charsets import BOMS, choose_decoding, codec_name, decode_html, utf8_overrules

QQ_PAGE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "extraction-dev-2" / "html" / "qq.html.gz"
# A news paragraph in Chinese: GB2312 bytes that are not UTF-8, UTF-8 bytes that GB2312 would garble.
CHINESE = (
    "北京时间今天上午，国家统计局发布了最新的经济数据。数据显示，今年前三季度国内生产总值同比增长百分之五，"
    "就业形势总体稳定。"
)

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


def test_charset_from_header_then_meta_then_detection():
    text = "Über die Brücke".encode("cp1252")
    assert decode_html(text, "text/html; charset=windows-1252") == ("Über die Brücke", "cp1252")
    meta = b"<html><head><meta charset='windows-1251'></head><body>" + RUSSIAN[0].encode("cp1251")
    assert RUSSIAN[0] in decode_html(meta, "text/html")[0]
    assert decode_html("é".encode(), "")[0] == "é"
    # No header charset, no meta tag, not UTF-8: detected.
    undeclared = ("<html><body>" + " ".join(RUSSIAN) + "</body></html>").encode("cp1251")
    decoded, charset = decode_html(undeclared, "text/html")
    assert RUSSIAN[1] in decoded and charset == "cp1251"


def html_page(text: str, codec: str, meta: str) -> bytes:
    return (
        f'<html><head><meta http-equiv="Content-Type" content="text/html; charset={meta}">'
        f"<title>{text[:6]}</title></head><body><p>{text}</p></body></html>"
    ).encode(codec)


def test_utf8_bytes_overrule_a_legacy_meta_charset():
    assert decode_html(html_page(CHINESE, "utf-8", "gb2312"), "text/html") == (
        html_page(CHINESE, "utf-8", "gb2312").decode(),
        "utf-8",
    )
    cyrillic = html_page(RUSSIAN[0], "utf-8", "windows-1251")
    assert decode_html(cyrillic) == (cyrillic.decode(), "utf-8")
    latin = html_page("Über die Brücke — 5 €", "utf-8", "iso-8859-1")
    assert decode_html(latin)[1] == "utf-8"


def test_a_page_truly_in_its_declared_legacy_charset_keeps_it():
    for text, codec, meta in ((CHINESE, "gb2312", "gb2312"), (RUSSIAN[0], "cp1251", "windows-1251")):
        body = html_page(text, codec, meta)
        decoded, charset = decode_html(body)
        assert (text in decoded, charset) == (True, codec_name(meta))
    latin = html_page("Über die Brücke — 5 €", "cp1252", "windows-1252")
    assert decode_html(latin) == (latin.decode("cp1252"), "cp1252")


def test_the_http_charset_and_a_bom_are_never_overruled():
    body = html_page(CHINESE, "utf-8", "utf-8")
    assert decode_html(body, "text/html; charset=gb2312")[1] == "gb2312"
    assert decode_html(codecs.BOM_UTF8 + html_page(CHINESE, "utf-8", "gb2312"))[1] == "utf-8"
    # Pure ASCII reads the same either way: the declaration stands.
    assert decode_html(html_page("plain", "ascii", "windows-1252"))[1] == "cp1252"


def test_utf8_overrules():
    utf8, gb = CHINESE.encode("utf-8"), CHINESE.encode("gb2312")
    assert utf8_overrules(utf8, "gb2312") and utf8_overrules(utf8, "cp1252")
    assert not utf8_overrules(gb, "gb2312")  # not UTF-8
    assert not utf8_overrules(b"plain ascii", "cp1252")  # nothing to tell them apart
    assert not utf8_overrules(utf8, "utf-8") and not utf8_overrules(utf8, "")


def test_a_feed_whose_xml_declaration_the_bytes_overrule_is_read_as_utf8_and_repaired():
    declared = '<?xml version="1.0" encoding="gb2312"?><rss><channel><item><title>{}</title></item></channel></rss>'
    utf8 = declared.format(CHINESE).encode("utf-8")
    decoding = choose_decoding(utf8, "application/rss+xml")
    assert (decoding.codec, decoding.repaired, decoding.decode(utf8)) == ("utf-8", True, declared.format(CHINESE))
    gb = declared.format(CHINESE).encode("gb2312")
    decoding = choose_decoding(gb, "application/rss+xml")
    assert (decoding.codec, decoding.repaired, decoding.decode(gb)) == ("gb2312", False, declared.format(CHINESE))
    # The HTTP charset is the server's word: it stands (and the bytes that contradict it are repaired its own way).
    latin = declared.replace("gb2312", "iso-8859-1").format("Über die Brücke").encode("utf-8")
    assert choose_decoding(latin, "application/rss+xml; charset=windows-1252").codec == "cp1252"
    assert choose_decoding(latin, "application/rss+xml").codec == "utf-8"


def test_the_qq_page_of_the_benchmark_reads_as_utf8():
    if not QQ_PAGE.exists():
        pytest.skip("../shared is absent")
    body = gzip.decompress(QQ_PAGE.read_bytes())
    assert b"charset=gb2312" in body[:1024]
    text, charset = decode_html(body)
    assert charset == "utf-8" and "DeepMind新电脑已可利用记忆自学" in text
