"""Small news pages for the page tests (transforms/page_html.py, transforms/extract.py): English and Russian
paragraphs, and a page that wraps them in navigation and a footer as real pages do."""

BODY = [
    "The city council approved the new budget on Tuesday after a debate that lasted well into the night, "
    "with members arguing over funding for schools, roads and the public library system.",
    "Supporters said the plan balances the books without cutting services, while critics warned that the "
    "projected tax revenue relies on optimistic assumptions about growth in the coming years.",
    "The mayor is expected to sign the budget into law later this week, officials said.",
]
RUSSIAN = [
    "Городской совет во вторник утвердил новый бюджет после долгих споров, которые продолжались до поздней ночи.",
    "Сторонники плана говорят, что он сбалансирован и не сокращает расходы на школы, дороги и библиотеки.",
    "Критики предупреждают, что прогноз налоговых поступлений основан на слишком оптимистичных предположениях.",
]


def page(paragraphs, *, title="Council approves budget", head="", lang="en") -> bytes:
    """A news page: navigation, the article, a footer with links (what a real page wraps its body in)."""
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        f"<!doctype html><html lang='{lang}'><head><title>{title} | Daily</title>{head}</head><body>"
        "<nav><a href='/'>Home</a> <a href='/world'>World</a> <a href='/sport'>Sport</a></nav>"
        f"<main><article><h1>{title}</h1>{body}</article></main>"
        "<footer><p>© Daily News. All rights reserved.</p><a href='/about'>About us</a></footer></body></html>"
    ).encode()
