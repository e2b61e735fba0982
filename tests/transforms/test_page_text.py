"""Page body extraction (transforms/page_text.py) on small pages reduced from those where whole paragraphs of the
body went missing: a body split into chunks around an advert (WIRED's layout in the extraction benchmark),
paragraphs the page repeats, and hard-wrapped paragraphs (Mozilla Readability's test pages)."""

import lxml.html

from transforms.page_html import extract_page, parse_html
from transforms.page_text import extract_body, join_split_body, prune, restore_repeats, unwrap_lines

PARAGRAPHS = [
    f"Paragraph {n} of the story: the council met on Tuesday and argued late into the night over the budget for "
    f"schools, roads and the library, with {n * 3} members speaking before the vote was finally taken."
    for n in range(1, 9)
]


def chunk(paragraphs) -> str:
    return (
        "<div class='grid'><div class='grid--item body body__container article__body'>"
        + "".join(f"<p>{p}</p>" for p in paragraphs)
        + "</div></div>"
    )


def split_page() -> bytes:
    """WIRED's layout: the body in chunks of one class, an advert and a newsletter box between them."""
    return (
        "<html><head><title>Budget</title></head><body><nav><a href='/'>Home</a></nav>"
        "<article class='article main-content'><h1>Council approves the budget</h1><div class='article__chunks'>"
        + chunk(PARAGRAPHS[:3])
        + "<div class='row full-bleed-ad'><span class='ad-label'>Advertisement</span></div>"
        + chunk(PARAGRAPHS[3:6])
        + "<div class='newsletter'><p>Sign up for our daily newsletter</p></div>"
        + chunk(PARAGRAPHS[6:])
        + "</div></article><footer><p>All rights reserved.</p></footer></body></html>"
    ).encode()


def test_a_body_split_around_adverts_is_kept_whole_and_in_order():
    text = extract_page(split_page(), "https://magazine.test/story").text
    found = [text.find(p) for p in PARAGRAPHS]
    assert -1 not in found, "a paragraph after the first chunk was lost"
    assert found == sorted(found)
    assert "Advertisement" not in text and "All rights reserved" not in text


def test_join_split_body_moves_later_chunks_into_the_first_and_leaves_what_stood_between():
    tree = parse_html(split_page().decode())
    assert join_split_body(tree) == 2
    bodies = tree.xpath("//div[contains(@class, 'article__body')]")
    assert len(bodies) == 1
    assert [p.text for p in bodies[0].iter("p")] == PARAGRAPHS
    assert tree.xpath("//span[@class='ad-label']")[0].text == "Advertisement"  # still there, outside the body


def test_cards_of_one_class_with_a_teaser_each_are_not_joined():
    cards = "".join(
        f"<div class='card'><h3>Story {n}</h3><p>{PARAGRAPHS[n]}</p><a href='/s{n}'>Read</a></div>" for n in range(4)
    )
    tree = parse_html(f"<html><body><main>{cards}</main></body></html>")
    assert join_split_body(tree) == 0
    assert len(tree.xpath("//div[@class='card']")) == 4


def test_chunk_text_and_tails_survive_the_join():
    html = (
        "<html><body><div class='part'><p>one one one</p><p>two two two</p></div>tail of the first"
        "<div class='part'>lead text<p>three three</p><p>four four</p></div>tail of the second</body></html>"
    )
    tree = parse_html(html)
    join_split_body(tree)
    text = " ".join(" ".join(tree.itertext()).split())
    assert text == "one one one two two two lead text three three four four tail of the first tail of the second"


def repeated_page(between: str = "") -> bytes:
    """Readability's svg-parsing and parsely-metadata pages: one paragraph several times in the body."""
    body = f"<p>{PARAGRAPHS[0]}</p>{between}<p>{PARAGRAPHS[0]}</p><p>{PARAGRAPHS[0]}</p>"
    return f"<html><body><article><h1>Test document</h1>{body}</article></body></html>".encode()


def test_a_paragraph_the_page_repeats_is_kept_as_often():
    assert extract_page(repeated_page()).text.count(PARAGRAPHS[0]) == 3
    svg = "<svg viewBox='0 0 50 50'><g><clipPath id='m'><polygon points='1,1 5,5'/></clipPath></g></svg>"
    assert extract_page(repeated_page(svg)).text.count(PARAGRAPHS[0]) == 3


def test_a_hidden_copy_is_not_restored():
    html = (
        f"<html><body><article><p>{PARAGRAPHS[1]}</p><p>{PARAGRAPHS[0]}</p>"
        f"<p style='display: none'>{PARAGRAPHS[0]}</p><p hidden>{PARAGRAPHS[0]}</p><p>{PARAGRAPHS[2]}</p>"
        "</article></body></html>"
    )
    assert extract_page(html.encode()).text.count(PARAGRAPHS[0]) == 1


def test_restore_repeats_puts_the_copies_after_the_last_one_and_skips_short_lines():
    short = "Photo: Agency"
    html = "".join(f"<p>{p}</p>" for p in (PARAGRAPHS[0], short, PARAGRAPHS[1], PARAGRAPHS[0], short, short))
    tree = lxml.html.fromstring(f"<html><body><div>{html}</div></body></html>")
    kept = restore_repeats([PARAGRAPHS[0], short, PARAGRAPHS[1]], tree)
    assert kept == [PARAGRAPHS[0], PARAGRAPHS[0], short, PARAGRAPHS[1]]
    # A copy in another container (a teaser box repeating the lead) is not the article repeating itself.
    tree = lxml.html.fromstring(f"<html><body><div><p>{PARAGRAPHS[0]}</p></div><div><p>{PARAGRAPHS[0]}</p></div>")
    assert restore_repeats([PARAGRAPHS[0]], tree) == [PARAGRAPHS[0]]


def test_prune_keeps_json_ld_and_drops_what_never_holds_text():
    tree = parse_html(
        '<html><head><script>var x = 1;</script><script type=\'application/ld+json\'>{"articleBody": "b"}</script>'
        "</head><body><nav>Menu</nav><p>Kept</p><aside>Related</aside><button>Share</button></body></html>"
    )
    prune(tree)
    assert " ".join(" ".join(tree.itertext()).split()) == '{"articleBody": "b"} Kept'
    assert extract_body(parse_html("<html><body></body></html>")) == ""


def wrapped(text: str, width: int = 60) -> str:
    """The text as hand-written HTML has it: broken into indented source lines."""
    words, lines, line = text.split(), [], ""
    for word in words:
        if len(line) + len(word) > width:
            lines.append(line)
            line = ""
        line = f"{line} {word}".strip()
    return "\n        ".join([*lines, line])


def test_a_hard_wrapped_paragraph_stays_one_paragraph_and_its_repeat_is_kept():
    """Readability's title-en-dash page: the body is two <div>s of the same hard-wrapped text."""
    div = f"<div>\n        {wrapped(PARAGRAPHS[0])}\n    </div>"
    text = extract_page(f"<html><body><article>\n    {div}\n    {div}\n</article></body></html>".encode()).text
    assert text.split("\n\n") == [PARAGRAPHS[0], PARAGRAPHS[0]]


def test_unwrap_lines_leaves_preformatted_text_alone():
    tree = parse_html(
        "<html><body><p>one\n  two<b>three\nfour</b>\nfive</p><pre>keep\n  this\n<code>and\nthis</code>\n</pre>"
        "\nafter</body></html>"
    )
    unwrap_lines(tree)
    assert " ".join(tree.find(".//p").itertext()) == "one two three four  five"
    assert tree.find(".//pre").text_content() == "keep\n  this\nand\nthis\n"
    assert tree.find(".//pre").tail == " after"
