"""The baseline: what a data engineer would write in an afternoon to do newsbeam's job on one machine.

    python benchmarks/plain_script.py FEEDS.txt OUTPUT_DIR      # FEEDS.txt: one feed URL per line

Fetch each feed (requests), parse it (feedparser), HTML to text (BeautifulSoup), language (langdetect), exact
duplicates by URL and by a hash of title and text (a dict), Parquet partitioned by date and hour (pandas/pyarrow).
No near-duplicates, no dead-letter table, no cross-run state: it is the floor newsbeam is compared against
(`benchmarks/e2e.py`). Needs the bench extra: pip install -e '.[bench]'.
"""

import hashlib
import sys
from pathlib import Path

import feedparser
import pandas as pd
import requests
from bs4 import BeautifulSoup
from langdetect import DetectorFactory, detect
from langdetect.lang_detect_exception import LangDetectException

DetectorFactory.seed = 0


def to_text(html: str) -> str:
    return BeautifulSoup(html or "", "html.parser").get_text("\n", strip=True)


def main(feeds_file: str, output: str) -> int:
    urls = [line.strip() for line in Path(feeds_file).read_text().splitlines() if line.strip()]
    session = requests.Session()
    rows, seen = [], {}
    for url in urls:
        response = session.get(url, timeout=20)
        response.raise_for_status()
        feed = feedparser.parse(
            response.content, response_headers={"content-type": response.headers.get("content-type", "")}
        )
        for entry in feed.entries:
            title = to_text(entry.get("title", ""))
            text = to_text(entry.get("summary", ""))
            link = entry.get("link", "")
            digest = hashlib.sha1(f"{title}\n{text}".encode()).hexdigest()
            if link in seen or digest in seen:
                continue
            seen[link] = seen[digest] = True
            try:
                language = detect(text or title)
            except LangDetectException:
                language = "und"
            published = pd.Timestamp(*entry.published_parsed[:6], tz="UTC") if entry.get("published_parsed") else pd.NaT
            rows.append(
                {
                    "url": link,
                    "guid": entry.get("id", ""),
                    "feed_url": url,
                    "title": title,
                    "text": text,
                    "published_at": published,
                    "language": language,
                    "content_hash": digest,
                }
            )
    frame = pd.DataFrame(rows)
    frame["date"] = frame["published_at"].dt.strftime("%Y-%m-%d")
    frame["hour"] = frame["published_at"].dt.strftime("%H")
    frame.to_parquet(output, partition_cols=["date", "hour"], compression="zstd", index=False)
    print(f"{len(rows)} articles written from {len(urls)} feeds")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
