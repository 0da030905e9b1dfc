#!/usr/bin/env python3
"""Build crates/duet-data/tests/fixtures/tokenizer_cases.jsonl: CLIP token ids from HF.

Each line is {"text": ..., "ids": [...]}: the ids HF's CLIP tokenizer gives for `text` with
truncation=True, max_length=77, padding="max_length" (pad = <|endoftext|> = 49407, the HF
convention). duet-data's tests/tokenizer_parity.rs must reproduce every list exactly.

Strings are real captions, chosen deterministically (sorted, de-duplicated, fixed stride):
  - Debian `openclipart-svg` (public domain): the work's dc:title and dc:description from the
    RDF metadata of each SVG (descriptions are long and noisy: truncation, HTML, URLs);
  - npm `emoji-datasource-google` emoji.json (MIT): names ("GRINNING FACE"), short names
    ("grinning_face") and the emoji characters themselves;
  - hand-picked edge cases (empty, whitespace only, > 77 tokens, emoji, CJK, accents, HTML
    entities, mixed case, literal special tokens).

Exact command used for the committed fixture (Debian bookworm, Python 3.11.7,
transformers 5.23.0, tokenizers 0.23.3; sources openclipart-svg 1:0.18+dfsg-19 and
emoji-datasource-google 16.0.0):

    apt-get update
    python3 scripts/make_tokenizer_fixture.py --workdir /tmp/duet-tokenizer-src

The script fetches the two packages into --workdir when they are not there yet
(`apt-get download openclipart-svg` + `dpkg-deb -x`, `npm pack emoji-datasource-google` + tar).
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import pathlib
import subprocess
import sys
import xml.etree.ElementTree as ET

REPO = pathlib.Path(__file__).resolve().parent.parent
TOKENIZER_JSON = REPO / "crates/duet-data/assets/clip-bpe/tokenizer.json"
OUT = REPO / "crates/duet-data/tests/fixtures/tokenizer_cases.jsonl"

NS = {"dc": "http://purl.org/dc/elements/1.1/"}

# How many strings to take from each source (after sorting and de-duplicating).
TAKE = {
    "openclipart_title": 600,
    "openclipart_description": 400,
    "emoji_name": 200,
    "emoji_short_name": 150,
    "emoji_char": 100,
    "longest_description": 40,
}

EDGE_CASES = [
    "",
    " ",
    "   \t\n  ",
    "a photo of a cat",
    "A PHOTO OF A CAT",
    "A Photo Of A Cat",
    "a  photo\tof\na   cat",
    " ".join(["a photo of a very long caption"] * 30),
    "word " * 200,
    "a" * 400,
    "supercalifragilisticexpialidocious",
    "café crème brûlée, naïve façade, jalapeño, Ångström",
    "e\u0301cole vs \u00e9cole",
    "Straße, İstanbul, ΣΟΦΟΣ, ﬁnance",
    "Привет, мир! Фотография кошки.",
    "Ελληνικά γράμματα",
    "日本語のテキストです。猫の写真",
    "中文标题：一只猫的照片",
    "한국어 고양이 사진",
    "مرحبا بالعالم",
    "שלום עולם",
    "สวัสดีครับ",
    "नमस्ते दुनिया",
    "ＡＢＣ　ｆｕｌｌｗｉｄｔｈ　１２３",
    "😀😃😄 smiling faces",
    "👨\u200d👩\u200d👧\u200d👦 family",
    "🇫🇷 🇯🇵 flags",
    "zero\u200bwidth space",
    "&amp; &lt;b&gt;bold&lt;/b&gt; &#39;quoted&#39; &nbsp;",
    "<b>bold</b> <a href=\"http://example.com\">link</a>",
    "don't it's we're I'll you've I'm he'd DON'T IT'S",
    "3.14159 2024-01-01 123456789 #42 $9.99 100%",
    "e-mail: someone@example.com, url: https://openclipart.org/detail/12345",
    "<|endoftext|>",
    "<|startoftext|> hello <|endoftext|>",
    "tabs\tand\nnewlines\r\nmixed",
    "!!!???...---",
    "C++ & C# vs. F#; x_y_z",
]


def run(cmd: list[str], cwd: pathlib.Path) -> None:
    print("+", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, cwd=cwd, check=True)


def fetch_sources(workdir: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """Download + unpack both packages into workdir unless already there."""
    workdir.mkdir(parents=True, exist_ok=True)
    svg_root = workdir / "ocsvg"
    if not svg_root.exists():
        run(["apt-get", "download", "openclipart-svg"], workdir)
        deb = sorted(workdir.glob("openclipart-svg_*.deb"))[-1]
        run(["dpkg-deb", "-x", str(deb), str(svg_root)], workdir)
    emoji_dir = workdir / "package"
    if not emoji_dir.exists():
        run(["npm", "pack", "emoji-datasource-google"], workdir)
        tgz = sorted(workdir.glob("emoji-datasource-google-*.tgz"))[-1]
        run(["tar", "xzf", str(tgz), "package/emoji.json", "package/package.json"], workdir)
    return svg_root, emoji_dir


def openclipart_texts(svg_root: pathlib.Path) -> tuple[list[str], list[str]]:
    """The cc:Work's own dc:title / dc:description (not the publisher's or creator's)."""
    titles, descriptions = set(), set()
    files = sorted(glob.glob(str(svg_root / "usr/share/openclipart/svg/**/*.svg"), recursive=True))
    for path in files:
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError:
            continue
        # The cc namespace differs between files (web.resource.org/cc/ vs creativecommons.org/ns#).
        for work in (el for el in root.iter() if str(el.tag).endswith("}Work")):
            for tag, bucket in (("title", titles), ("description", descriptions)):
                node = work.find(f"dc:{tag}", NS)
                if node is not None and node.text and node.text.strip():
                    bucket.add(node.text)
    print(f"openclipart: {len(files)} svg, {len(titles)} titles, {len(descriptions)} descriptions",
          file=sys.stderr)
    return sorted(titles), sorted(descriptions)


def emoji_texts(emoji_dir: pathlib.Path) -> tuple[list[str], list[str], list[str]]:
    entries = json.loads((emoji_dir / "emoji.json").read_text(encoding="utf-8"))
    names = sorted({e["name"] for e in entries if e.get("name")})
    short = sorted({s for e in entries for s in e.get("short_names", [])})
    chars = sorted({
        "".join(chr(int(cp, 16)) for cp in e["unified"].split("-")) + " " + e["short_name"].replace("_", " ")
        for e in entries
    })
    print(f"emoji: {len(entries)} entries", file=sys.stderr)
    return names, short, chars


def stride(items: list[str], n: int) -> list[str]:
    """Every k-th item of a sorted list, k = len // n, so the pick spans the whole range."""
    if len(items) <= n:
        return list(items)
    k = len(items) // n
    return items[::k][:n]


def package_version(svg_root: pathlib.Path, emoji_dir: pathlib.Path) -> dict[str, str]:
    changelog = svg_root / "usr/share/doc/openclipart-svg/changelog.Debian.gz"
    first = gzip.open(changelog, "rt", encoding="utf-8").readline()
    emoji = json.loads((emoji_dir / "package.json").read_text(encoding="utf-8"))
    return {"openclipart-svg": first.split("(")[1].split(")")[0], "emoji-datasource-google": emoji["version"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("/tmp/duet-tokenizer-src"))
    parser.add_argument("--tokenizer", type=pathlib.Path, default=TOKENIZER_JSON)
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    args = parser.parse_args()

    import tokenizers
    import transformers
    from transformers import CLIPTokenizerFast

    svg_root, emoji_dir = fetch_sources(args.workdir)
    titles, descriptions = openclipart_texts(svg_root)
    names, short_names, chars = emoji_texts(emoji_dir)

    picked: list[str] = list(EDGE_CASES)
    for source, items in (
        ("openclipart_title", titles),
        ("openclipart_description", descriptions),
        ("emoji_name", names),
        ("emoji_short_name", short_names),
        ("emoji_char", chars),
    ):
        picked += stride(items, TAKE[source])
    # The stride rarely lands on the few descriptions longer than 77 tokens: add the longest.
    picked += sorted(descriptions, key=lambda t: (-len(t), t))[: TAKE["longest_description"]]
    seen: set[str] = set()
    texts = [t for t in picked if not (t in seen or seen.add(t))]

    tok = CLIPTokenizerFast(tokenizer_file=str(args.tokenizer), pad_token="<|endoftext|>")
    assert tok.pad_token_id == 49407, tok.pad_token_id
    ids = tok(texts, truncation=True, max_length=77, padding="max_length")["input_ids"]

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8", newline="\n") as f:
        for text, row in zip(texts, ids):
            assert len(row) == 77, (text, len(row))
            f.write(json.dumps({"text": text, "ids": row}, ensure_ascii=False) + "\n")

    truncated = sum(len(row) > 77 for row in tok(texts)["input_ids"])
    print(json.dumps({
        "cases": len(texts),
        "longer_than_77": truncated,
        "python": sys.version.split()[0],
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        **package_version(svg_root, emoji_dir),
    }, indent=1), file=sys.stderr)


if __name__ == "__main__":
    main()
