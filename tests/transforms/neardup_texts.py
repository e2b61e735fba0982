"""News-like texts and the copies syndication makes of them, for the near-duplicate tests of batch and streaming.

A wire story and, made from it as issue 13 describes: a heavily edited copy (one word in five deleted, replaced or
followed by a word of another story, the last paragraph cut, furniture lines, the headline's words shuffled) and a
regional copy (cut to its first two of seven paragraphs, a local paragraph added, another headline). And what must
stay apart: another story on the same event (same names, places and figures, other text), a template story (the
same market report with other figures) and two stories that quote one long statement.
"""

import random

WIRE_TITLE = "Floods force evacuation of 3,200 residents in the Varna valley"
WIRE = [
    "Rescue teams evacuated about 3,200 people from villages in the Varna valley on Sunday after two days of heavy "
    "rain pushed the river over its banks in at least 14 places, the regional emergency service said.",
    "Governor Elena Petrova said the water had reached the first floor of homes in Dolno Selo and Kamenitsa, and "
    "that 6 schools had been turned into shelters for families who could not stay with relatives.",
    "The national weather office recorded 180 millimetres of rain in 48 hours at its station near Kamenitsa, more "
    "than the area usually receives in two months, and warned that more storms were expected on Tuesday.",
    "Army engineers began building a temporary dam of sandbags along the railway line, which was closed between "
    "Varna and Ruse after part of the track was washed away near the old bridge.",
    "Farmers in the lower valley said the flood had destroyed most of the maize harvest that had not yet been "
    "brought in, and the agriculture ministry promised to send inspectors to assess the damage this week.",
    "Petrova asked the government to declare a state of emergency for the 9 municipalities affected, which would "
    "release money from the national reserve for repairs to roads, bridges and the water supply.",
    "Residents said the last flood of this size hit the valley in 2005, when the river rose more than 4 metres and "
    "the town of Dolno Selo was cut off for a week.",
]

# Another story's words: what the edits put in.
DONOR = (
    "the council approved a new contract for school buses after months of complaints from parents about late "
    "arrivals and crowded seats on the longest routes through the hills north of the city"
).split()

LOCAL = (
    "In Brestovitsa, the mayor's office said volunteers from the local football club had filled more than 2,000 "
    "sandbags on Saturday night and that the sports hall would stay open for anyone who needs a bed."
)

# The same event, the same people, places and figures: another outlet's own story.
SAME_EVENT_TITLE = "Varna valley counts the cost as river recedes"
SAME_EVENT = [
    "Governor Elena Petrova toured Dolno Selo by boat on Monday as the water began to fall, promising the 3,200 "
    "people who left their homes that nobody would be asked to pay for the clean-up of the 14 flooded districts.",
    "Kamenitsa, where 180 millimetres fell in 48 hours, still had no drinking water, and officials in Ruse said "
    "trains to Varna would not run before the end of the month.",
    "Many older residents compared the scene with 2005, and several shopkeepers told us their insurance did not "
    "cover flooding, a gap the 9 mayors of the valley want the government to close.",
]

# A market report from a template: the same words on two days, other figures.
MARKET_TITLE = "Sofia stocks close higher as banks gain"
MARKET = [
    "The SOFIX index of the Sofia stock exchange closed 1.2 percent higher at 812.45 points on Friday, its third "
    "gain in a row, as shares of banks and energy companies rose on hopes of lower interest rates.",
    "First Investment Bank gained 3.4 percent to 2.96 levs and Chimimport added 1.8 percent to 1.13 levs, while "
    "Sopharma lost 0.6 percent to 4.02 levs. Turnover reached 2.7 million levs across 41 traded issues.",
    "The broader BGBX40 index rose 0.9 percent to 165.30 points and the BGTR30 index of total returns gained "
    "1.1 percent to 742.18 points, the exchange said.",
]
MARKET_NEXT_DAY = [
    "The SOFIX index of the Sofia stock exchange closed 0.4 percent higher at 815.77 points on Monday, its fourth "
    "gain in a row, as shares of banks and energy companies rose on hopes of lower interest rates.",
    "First Investment Bank gained 1.7 percent to 3.01 levs and Chimimport added 0.9 percent to 1.14 levs, while "
    "Sopharma lost 1.5 percent to 3.96 levs. Turnover reached 1.9 million levs across 37 traded issues.",
    "The broader BGBX40 index rose 0.3 percent to 165.82 points and the BGTR30 index of total returns gained "
    "0.5 percent to 745.90 points, the exchange said.",
]

# One long statement, quoted in full by two different stories.
QUOTE = (
    '"We are asking every citizen to be patient and to follow the instructions of the emergency services, because '
    "the next days will be difficult for all of us, and the government will do everything in its power to help "
    'the families who lost their homes, their animals and their harvest," the prime minister said in a statement.'
)
QUOTE_STORY_A_TITLE = "Parliament approves emergency budget for flood relief"
QUOTE_STORY_A = [
    "Parliament voted on Wednesday to move 120 million levs from the road programme to a fund for flood relief, "
    "with 163 deputies in favour and 41 against.",
    QUOTE,
    "The opposition said the money came too late and accused the finance ministry of hiding the size of the "
    "reserve, which it put at more than 900 million levs.",
    "The fund will pay for temporary housing, seed for farmers and repairs to schools before the winter.",
    "Deputies also agreed to suspend for six months the tax on fuel for farm machinery in the districts declared "
    "disaster areas, a measure the farmers' union had demanded since the spring frosts.",
]
QUOTE_STORY_B_TITLE = "Volunteers arrive from across the country"
QUOTE_STORY_B = [
    "Hundreds of volunteers arrived in the valley by bus and car over the weekend, many of them students who "
    "had answered calls on social media to help clear mud from homes and cellars.",
    "Red Cross coordinators said they had more helpers than tools, and asked companies to donate shovels, "
    "pumps and protective boots rather than food and clothes, of which there was already plenty.",
    QUOTE,
    "Bus companies offered free tickets to anyone travelling to help, and the railway added extra carriages on "
    "the trains to Gorna Oryahovitsa, the nearest station still in service.",
    "In the evenings the volunteers gathered in the square of the town hall, where local bakers and a restaurant "
    "from the capital handed out soup and bread to everyone who had spent the day in the mud.",
]


def edited(paragraphs: list[str], rate: float, seed: int) -> list[str]:
    """Each word, with probability `rate`, deleted, replaced by a DONOR word or followed by one, in equal parts."""
    rng = random.Random(seed)
    out = []
    for paragraph in paragraphs:
        words = []
        for word in paragraph.split():
            if rng.random() >= rate:
                words.append(word)
                continue
            op = rng.randrange(3)
            if op == 1:
                words.append(rng.choice(DONOR))
            elif op == 2:
                words.extend((word, rng.choice(DONOR)))
        out.append(" ".join(words))
    return out


def text(paragraphs: list[str]) -> str:
    return "\n\n".join(paragraphs)


def heavy_edit() -> tuple[str, str]:
    """(title, text) of the wire story edited at 20%, last paragraph cut, furniture added, headline shuffled."""
    body = edited(WIRE[:-1], 0.20, seed=5)
    body.insert(3, "Also Read :- Parliament approves emergency budget for flood relief")
    body.append("Follow us on Facebook and Twitter for the latest news and updates.")
    words = WIRE_TITLE.split()
    random.Random(2).shuffle(words)
    return " ".join(words), text(body)


def heavy_cut() -> tuple[str, str]:
    """(title, text) of the wire story cut to its first two of seven paragraphs with a local paragraph added."""
    return "Valley villages evacuated as river bursts its banks", text(edited(WIRE[:2], 0.03, seed=7) + [LOCAL])


def long_wire() -> tuple[str, str]:
    """(title, text) of a long wire story: the flood report and then the budget story's twelve paragraphs in all."""
    return WIRE_TITLE, text(WIRE + QUOTE_STORY_A)


def cut_to_lead() -> tuple[str, str]:
    """(title, text) of the long wire story cut to its first two of twelve paragraphs with a local paragraph added:
    a Jaccard similarity near 0.1, too low to share a band of 8 rows, but the same top."""
    return "Valley villages evacuated as river bursts its banks", text(edited(WIRE[:2], 0.03, seed=7) + [LOCAL])
