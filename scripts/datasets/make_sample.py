#!/usr/bin/env python3
"""Build datasets/sample/: a small real image-text set in img2dataset's webdataset layout.

Two permissively licensed sources, both fetched from package registries:

  npm    emoji-datasource-google 16.0.0         emoji.json (MIT) + img/google/64/<unified>.png
                                                (Noto Emoji images, Apache-2.0); RGBA 64x64
  Debian openclipart-png / openclipart-svg       PNGs under /usr/share/openclipart/png/<category>/
         1:0.18+dfsg-19                         and the matching SVGs, whose RDF metadata holds
                                                dc:title / dc:description; public domain

Each kept item becomes one `file://` row (url, caption, source, source_path, license) of an
input parquet, and the real `img2dataset` tool turns the rows into shards, so the output is
byte-for-byte what img2dataset writes (bar tar mtimes and the times in `_stats.json`):

  datasets/sample/train/{00000..}.tar|.parquet|_stats.json   ~90 % of the items + 3 broken rows
  datasets/sample/val/{00000..}.tar|.parquet|_stats.json     ~10 %, disjoint from train
  datasets/sample/MANIFEST.csv                               one row per input row (both splits)
  datasets/sample/LICENSES/                                  MIT, Apache-2.0 and the openclipart
                                                             public-domain dedication, verbatim

img2dataset settings and why:
  image_size=64, resize_mode="border": clip art is often wide or tall (banners, maps, rows of
      icons); center_crop would cut the subject off, keep_ratio would leave non-square images
      that every consumer must crop anyway. "border" scales the longest side to 64 and pads
      with white, the same white img2dataset composites alpha onto.
  encode_format="jpg", encode_quality=90: every source PNG with alpha (all emoji, ~60 % of the
      clip art) is alpha-matted onto white by img2dataset's resizer before encoding, which is
      what a CLIP-style RGB model wants; PNG would keep no alpha either and costs ~2.5x the
      bytes (5.3 kB vs 2.0 kB per val image). OpenCV writes baseline JFIF, 4:2:0.
  number_sample_per_shard=500: several train shards. NB: img2dataset's key width is
      oom_shard_count + ceil(log10(number_sample_per_shard)) = 5 + 3, so keys have 8 digits
      (shard 1 starts at key 00001000), not the 9 of its 10,000-per-shard default.
  processes_count=1, thread_count=1: with one download thread the tar members come out in
      input order, so reruns give the same member order and payload bytes.
  incremental_mode: left at "incremental", on a split folder this script has just deleted.
      img2dataset 1.47.0's "overwrite" is broken on local paths: download() creates
      <output>/_tmp first, then "overwrite" deletes <output> with _tmp in it, and every shard
      fails with FileNotFoundError on _tmp/<n>.feather.

Broken rows, train split only, to exercise the failed-row path (present in the parquet with
status != "success", absent from the tar): a `file://` path that does not exist, an HTML page
saved as `.png`, and the first 1,000 bytes of a real PNG (truncated).

Counts: --emoji-count 780 and --clipart-count 540 keep datasets/sample/ under 12 MB on disk.
A sample costs ~8.4 kB of tar: each of its 3 members has a 512 B header plus a 1 KiB PAX
record (webdataset 0.2's TarWriter stamps a float mtime, which ustar cannot hold), and each
payload is padded to 512 B (jpg ~2 kB, json ~0.6 kB, txt < 0.5 kB). Tar headers are mostly
zeros, so git's compressed copy is ~5x smaller than the working tree.

Selection (deterministic: inputs sorted, every random choice from random.Random(SEED)):
  emoji    every emoji.json entry outside category "Component" (no skin-tone variants), then a
           seeded sample of --emoji-count.
  clipart  PNGs deduplicated by sha256 (the same file sits in several category folders),
           boilerplate titles dropped (icon-theme names, "Clipart by X - file_name" prefixes
           stripped), one item per caption, no side over 4096 px (those belong to a bad-input
           corpus), then a seeded sample of --clipart-count.
  val      a seeded --val-fraction of each source.

Exact command used for the committed sample (Debian bookworm, Python 3.11.7, npm 11.19.1;
in the venv: img2dataset 1.47.0, webdataset 0.2.111 (img2dataset pins <0.3), pandas 2.3.3,
pyarrow 26.0.1, opencv-python-headless 4.14.0.94, albumentations 1.4.24, numpy 2.4.6):

    apt-get update
    python3 -m venv /tmp/i2d-venv
    /tmp/i2d-venv/bin/pip install img2dataset==1.47.0
    /tmp/i2d-venv/bin/python scripts/datasets/make_sample.py

It runs `npm pack` and `apt-get download` itself into --work-dir (default
/tmp/duet-sample-src, which also fixes the `file://` URLs recorded in the shards) unless the
packages are already there. Then check the result with scripts/datasets/check_sample.py.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import html
import json
import os
import pathlib
import random
import re
import shutil
import struct
import subprocess
import zlib

REPO = pathlib.Path(__file__).resolve().parent.parent.parent
SEED = 20240607

EMOJI_PKG = "emoji-datasource-google"
EMOJI_VERSION = "16.0.0"
CLIPART_VERSION = "1:0.18+dfsg-19"
CLIPART_PKGS = ("openclipart-png", "openclipart-svg")

EMOJI_SOURCE = f"npm:{EMOJI_PKG}@{EMOJI_VERSION}"
CLIPART_SOURCE = f"debian:openclipart-png@{CLIPART_VERSION}"
# emoji.json and the package are MIT; the Google images are Noto Emoji, Apache-2.0
# (emoji-datasource README, "Image Sources").
EMOJI_LICENSE = "MIT (data) AND Apache-2.0 (image)"
CLIPART_LICENSE = "public-domain"

MAX_SIDE = 4096
TRUNCATED_BYTES = 1000

# Titles that name an icon theme or a collection rather than the picture.
BOILERPLATE_TITLE = re.compile(
    r"^(part of the flat icon collection|lemon svg theme|etiquette icons|svg gradient collection"
    r"|map symbols|aiga_symbol_signs|gramastar|clipart|untitled|image|drawing|icon|card"
    r"|ooo icons?)\b",
    re.I,
)
CLIPART_BY = re.compile(r"^clipart by [^-]+ - ", re.I)
JUNK_DESCRIPTION = re.compile(
    r"^(hash\(0x[0-9a-f]+\)|eps converted from\b.*|made with (sodipodi|inkscape)\b.*)$", re.I)
# Authors' e-mail addresses and links are not picture descriptions.
CONTACT = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+|https?://[^\s)]+|www\.[^\s)]+", re.I)
# What is left around a removed address: "(email: )", a trailing "Email:".
CONTACT_REST = re.compile(r"\(\s*(e-?mail\s*:?)?\s*\)|\be-?mail( ad+ress)?\s*:?\s*$", re.I)


def sh(cmd: list[str], cwd: pathlib.Path) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True)


def fetch(work: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """npm pack / apt-get download the pinned packages into `work` and unpack them."""
    work.mkdir(parents=True, exist_ok=True)
    emoji_root = work / "emoji/package"
    if not (emoji_root / "emoji.json").exists():
        tgz = work / f"{EMOJI_PKG}-{EMOJI_VERSION}.tgz"
        if not tgz.exists():
            sh(["npm", "pack", "--loglevel=error", f"{EMOJI_PKG}@{EMOJI_VERSION}"], work)
        (work / "emoji").mkdir(exist_ok=True)
        sh(["tar", "-xzf", tgz.name, "-C", "emoji"], work)
    clipart_root = work / "openclipart/usr/share/openclipart"
    if not (clipart_root / "svg").exists():
        for pkg in CLIPART_PKGS:
            if not list(work.glob(f"{pkg}_*.deb")):
                sh(["apt-get", "download", f"{pkg}={CLIPART_VERSION}"], work)
            (deb,) = work.glob(f"{pkg}_*.deb")
            sh(["dpkg-deb", "-x", deb.name, "openclipart"], work)
    return emoji_root, clipart_root


def pick(options: list[str], key: str) -> str:
    """A template chosen by the item's key, so it does not shift when other items change."""
    return options[zlib.crc32(key.encode()) % len(options)]


def words(s: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", s.lower()))


def emoji_caption(e: dict) -> str:
    key = e["unified"]
    if e["subcategory"] == "country-flag" and e["name"].endswith(" Flag"):
        # "Egypt Flag" (the Unicode name is "REGIONAL INDICATOR ..."); short names are ISO codes.
        country = e["name"][: -len(" Flag")]
        return pick(
            [
                f"the flag of {country}",
                f"{country} flag emoji",
                f"an emoji of the flag of {country}",
                f"flag of {country} (country flag emoji)",
            ],
            key,
        )
    name = (e["name"] or e["short_name"].replace("_", " ")).lower()
    article = "an" if name[0] in "aeiou" else "a"
    category = e["category"].lower()
    subcategory = e["subcategory"].replace("-", " ")
    caption = pick(
        [
            f"{article} {name} emoji",
            f"the {name} emoji, from {category}",
            f"emoji of {name}",
            f"{name} ({subcategory} emoji)",
        ],
        key,
    )
    # A short name that adds words is a synonym worth keeping (ELECTRIC TORCH -> flashlight);
    # skip codes ("v", "flag-ru", "+1") and spelling variants ("fuelpump").
    for alias in e["short_names"]:
        alias_text = re.sub(r"[_-]", " ", alias)
        alias_words = words(alias_text)
        if (
            alias_words
            and not alias_words <= words(name)
            and all(len(w) >= 3 and w.isalpha() for w in alias_words)
            and alias_text.replace(" ", "") != re.sub(r"[^a-z]", "", name)
        ):
            caption += f", also called {alias_text}"
            break
    return caption


def emoji_items(root: pathlib.Path) -> list[dict]:
    entries = json.loads((root / "emoji.json").read_text())
    items = []
    for e in sorted(entries, key=lambda e: e["unified"]):
        png = root / "img/google/64" / e["image"]
        if e["category"] == "Component" or not e["has_img_google"] or not png.exists():
            continue
        items.append({
            "file": png,
            "caption": emoji_caption(e),
            "source": EMOJI_SOURCE,
            "source_path": f"package/img/google/64/{e['image']}",
            "license": EMOJI_LICENSE,
        })
    return items


def rdf_field(work: str, tag: str) -> str:
    m = re.search(rf"<dc:{tag}>(.*?)</dc:{tag}>", work, re.S)
    if not m or "<" in m.group(1):  # nested elements (cc:Agent), not plain text
        return ""
    # Some files escape twice ("&amp;quot;").
    return re.sub(r"\s+", " ", html.unescape(html.unescape(m.group(1)))).strip()


def svg_metadata(svg: pathlib.Path) -> tuple[str, str]:
    text = svg.read_text(encoding="utf-8", errors="replace")
    m = re.search(r"<cc:Work\b.*?</cc:Work>", text, re.S)
    if not m:
        return "", ""
    return rdf_field(m.group(0), "title"), rdf_field(m.group(0), "description")


def png_size(path: pathlib.Path) -> tuple[int, int]:
    with path.open("rb") as f:
        head = f.read(24)
    return struct.unpack(">II", head[16:24])


def clean_title(title: str) -> str:
    title = CONTACT_REST.sub("", CONTACT.sub("", CLIPART_BY.sub("", title)))
    title = re.sub(r"\bopenclipart\b", "", title.replace("_", " "), flags=re.I)
    return re.sub(r"\s+", " ", title).strip(" .-")


def clean_description(desc: str, title: str) -> str:
    desc = re.sub(r"\s+", " ", CONTACT_REST.sub("", CONTACT.sub("", desc).strip(" ."))).strip()
    if JUNK_DESCRIPTION.match(desc) or desc.lower().strip(" .") == title.lower():
        return ""
    if len(desc) > 160:  # keep the caption inside a CLIP context; cut at a word boundary
        desc = desc[:160].rsplit(" ", 1)[0]
    return desc.strip(" .")


def clipart_caption(title: str, desc: str, rel: pathlib.Path) -> str:
    path = " / ".join(p.replace("_", " ").replace("-", " ") for p in rel.parent.parts)
    caption = pick(
        [
            f"{title}, clip art from {path}",
            f"clip art of {title} ({path})",
            f"{title}: a public-domain drawing filed under {path}",
        ],
        str(rel),
    )
    return f"{caption}. {desc}" if desc else caption


def clipart_items(root: pathlib.Path) -> list[dict]:
    pngs = sorted((root / "png").rglob("*.png"))
    seen_sha: set[str] = set()
    seen_caption_key: set[str] = set()
    items = []
    for png in pngs:
        rel = png.relative_to(root / "png")
        sha = hashlib.sha256(png.read_bytes()).hexdigest()
        if sha in seen_sha:
            continue
        seen_sha.add(sha)
        if max(png_size(png)) > MAX_SIDE:
            continue
        title, desc = svg_metadata((root / "svg" / rel).with_suffix(".svg"))
        title = clean_title(title)
        if not title or BOILERPLATE_TITLE.match(title):
            continue
        desc = clean_description(desc, title)
        # One item per title + description: near-identical variants (star_43pt19step, ...)
        # would make held-out retrieval ambiguous.
        caption_key = f"{title.lower()}|{desc.lower()}"
        if caption_key in seen_caption_key:
            continue
        seen_caption_key.add(caption_key)
        items.append({
            "file": png,
            "caption": clipart_caption(title, desc, rel),
            "source": CLIPART_SOURCE,
            "source_path": f"/usr/share/openclipart/png/{rel}",
            "license": CLIPART_LICENSE,
        })
    return items


def broken_items(work: pathlib.Path, a_real_png: pathlib.Path) -> list[dict]:
    """Rows img2dataset must record as failures (train split only)."""
    broken = work / "broken"
    broken.mkdir(exist_ok=True)
    html_png = broken / "html_saved_as.png"
    html_png.write_text("<!DOCTYPE html>\n<html><body><h1>404 Not Found</h1></body></html>\n")
    truncated = broken / "truncated.png"
    truncated.write_bytes(a_real_png.read_bytes()[:TRUNCATED_BYTES])
    rows = [
        (broken / "does_not_exist.png", "a file that does not exist"),
        (html_png, "an html error page saved as png"),
        (truncated, f"the first {TRUNCATED_BYTES} bytes of a png"),
    ]
    return [
        {"file": f, "caption": c, "source": "broken", "source_path": "", "license": "none"}
        for f, c in rows
    ]


def write_input(items: list[dict], path: pathlib.Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({
        "url": [f"file://{it['file']}" for it in items],
        "caption": [it["caption"] for it in items],
        "source": [it["source"] for it in items],
        "source_path": [it["source_path"] for it in items],
        "license": [it["license"] for it in items],
    })
    pq.write_table(table, path)


def run_img2dataset(input_parquet: pathlib.Path, output: pathlib.Path) -> None:
    from img2dataset import download

    download(
        url_list=str(input_parquet),
        input_format="parquet",
        url_col="url",
        caption_col="caption",
        save_additional_columns=["source", "source_path", "license"],
        output_format="webdataset",
        output_folder=str(output),
        image_size=64,
        resize_mode="border",
        encode_format="jpg",
        encode_quality=90,
        number_sample_per_shard=500,
        processes_count=1,
        thread_count=1,
        enable_wandb=False,
    )


def write_manifest(out: pathlib.Path) -> list[dict]:
    import pyarrow.parquet as pq

    rows = []
    for split in ("train", "val"):
        for parquet in sorted((out / split).glob("*.parquet")):
            table = pq.read_table(parquet).to_pylist()
            for r in sorted(table, key=lambda r: r["key"]):
                package, _, version = r["source"].partition("@")
                rows.append({
                    "key": r["key"],
                    "split": split,
                    "shard": f"{split}/{parquet.stem}.tar",
                    "status": r["status"],
                    "caption": r["caption"],
                    "source_package": package,
                    "source_version": version,
                    "source_path": r["source_path"],
                    "license": r["license"],
                })
    with (out / "MANIFEST.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def copy_licenses(emoji_root: pathlib.Path, clipart_root: pathlib.Path, out: pathlib.Path) -> None:
    """The licence texts the redistributed items come under (MIT and Apache-2.0 want a copy)."""
    licenses = out / "LICENSES"
    licenses.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(emoji_root / "LICENSE", licenses / "emoji-datasource-MIT.txt")
    # Debian's copy; the emoji-datasource package names Apache-2.0 for the Noto images but
    # does not ship the text.
    shutil.copyfile("/usr/share/common-licenses/Apache-2.0", licenses / "Apache-2.0.txt")
    doc = clipart_root.parent / "doc/openclipart-png/copyright"
    shutil.copyfile(doc, licenses / "openclipart-copyright.txt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--work-dir", type=pathlib.Path, default=pathlib.Path("/tmp/duet-sample-src"))
    parser.add_argument("--out", type=pathlib.Path, default=REPO / "datasets/sample")
    parser.add_argument("--emoji-count", type=int, default=780)
    parser.add_argument("--clipart-count", type=int, default=540)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    args = parser.parse_args()
    # albumentations (imported by img2dataset) would otherwise ask PyPI for a newer version.
    os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"

    work = args.work_dir.resolve()
    emoji_root, clipart_root = fetch(work)
    rng = random.Random(SEED)
    train, val = [], []
    for items, count in ((emoji_items(emoji_root), args.emoji_count),
                         (clipart_items(clipart_root), args.clipart_count)):
        print(f"{items[0]['source']}: {len(items)} candidates, keeping {count}")
        chosen = rng.sample(items, min(count, len(items)))
        n_val = round(len(chosen) * args.val_fraction)
        val += chosen[:n_val]
        train += chosen[n_val:]
    train += broken_items(work, clipart_root / "png/animals/az-lizard_benji_park_01.png")
    rng.shuffle(train)
    rng.shuffle(val)

    for split, items in (("train", train), ("val", val)):
        input_parquet = work / f"input_{split}.parquet"
        write_input(items, input_parquet)
        shutil.rmtree(args.out / split, ignore_errors=True)
        run_img2dataset(input_parquet, args.out / split)
    rows = write_manifest(args.out)
    copy_licenses(emoji_root, clipart_root, args.out)

    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    for split in ("train", "val"):
        stats = [json.loads(p.read_text()) for p in sorted((args.out / split).glob("*_stats.json"))]
        print(f"{split}: {len(stats)} shards, {sum(s['count'] for s in stats)} rows, "
              f"{sum(s['successes'] for s in stats)} successes")
    print(f"manifest: {len(rows)} rows; {args.out}: {total / 1e6:.2f} MB")


if __name__ == "__main__":  # img2dataset's multiprocessing hangs without this guard
    main()
