#!/usr/bin/env python3
"""Build crates/duet-data/tests/fixtures/bad/: small shards with every kind of bad input.

Each file mixes good samples with bad ones, so a test can check both that every problem is
reported with the right reason and that every good sample still arrives. MANIFEST.json lists,
per file: the format, the keys the *reader* yields as raw samples (in order), the keys it skips
and why, the shard failure reason if any, the problems only a later stage can see (with the
stage: "decode" checks image bytes, "select" applies the FieldSelector and checks UTF-8), and
the keys that should survive the whole pipeline ("good").

Good images are real img2dataset JPEGs taken from datasets/sample/train/00000.tar (the first
members, 64x64, 1-3 KB) and a hand-made 2x2 PNG; nothing is random, so reruns give the same
bytes (tar mtimes are fixed, pyarrow writes its own version into the parquet footer).

Exact command used for the committed corpus (Python 3.11.7, pyarrow 26.0.1):

    python3 -m venv /tmp/pq-venv && /tmp/pq-venv/bin/pip install pyarrow==26.0.1
    /tmp/pq-venv/bin/python scripts/make_bad_corpus.py
"""

from __future__ import annotations

import io
import json
import struct
import tarfile
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_TAR = ROOT / "datasets/sample/train/00000.tar"
OUT = ROOT / "crates/duet-data/tests/fixtures/bad"
MTIME = 1795345221  # fixed; img2dataset stamps time.time()

HTML = b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n<body>gone</body></html>\n"
NOT_UTF8 = b"caf\xe9 au lait"  # Latin-1 e-acute


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, rows: bytes) -> bytes:
    """An 8-bit RGB PNG; `rows` is the filtered scanline data (may be short of the header's size)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(rows, 9)) + png_chunk(b"IEND", b""))


GOOD_PNG = png(2, 2, b"\x00" + b"\xff\x00\x00" * 2 + b"\x00" + b"\x00\x00\xff" * 2)
# Header says 30000x30000 (900 Mpx, over PIL's 89.5 Mpx limit); the IDAT holds one zero row.
# The decoder must refuse it from the header, before allocating.
HUGE_PNG = png(30000, 30000, b"\x00" * (1 + 3 * 30000))


def real_samples(n: int) -> list[tuple[bytes, bytes]]:
    """(jpg, txt) of the first n samples of the bundled img2dataset shard."""
    out: dict[str, dict[str, bytes]] = {}
    with tarfile.open(SAMPLE_TAR) as tar:
        for member in tar:
            key, ext = member.name.split(".", 1)
            if ext in ("jpg", "txt"):
                out.setdefault(key, {})[ext] = tar.extractfile(member).read()
            if len(out) > n:
                break
    return [(v["jpg"], v["txt"]) for v in list(out.values())[:n]]


GOOD = real_samples(6)


def tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    """A PAX tar as webdataset's TarWriter writes it: a PAX mtime header before every member."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), MTIME, 0o444
            info.uname = info.gname = "bigdata"
            info.pax_headers = {"mtime": f"{MTIME}.3509564"}
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, dict] = {}

    def entry(name, fmt, samples, good, skipped=None, later=None, shard_failed=None, note=None):
        manifest[name] = {
            "format": fmt,
            "samples": samples,
            "good": good,
            "skipped": skipped or {},
            "later": later or {},
            "shard_failed": shard_failed,
            **({"note": note} if note else {}),
        }

    # mixed.tar: one sample per problem, good samples between them.
    (j0, t0), (j1, t1), (j2, t2), (j3, t3), (j4, t4), (j5, t5) = GOOD
    mixed = [
        ("00000000.jpg", j0), ("00000000.txt", t0),
        ("00000001.jpg", HTML), ("00000001.txt", b"html saved as jpg"),
        ("00000002.jpg", b""), ("00000002.txt", b"zero-byte jpg"),
        ("00000003.png", HUGE_PNG), ("00000003.txt", b"header claims 30000x30000"),
        ("00000004.jpg", j1), ("00000004.txt", NOT_UTF8),
        ("00000005.jpg", j2),  # no caption
        ("00000006.txt", b"a caption with no image"),
        ("00000007.PNG", GOOD_PNG), ("00000007.TXT", b"upper-case extensions"),
        ("00000000.jpg", j3), ("00000000.txt", b"key 00000000 again"),
        ("00000008.jpg", j4), ("00000008.txt", t4), ("00000008.json", b'{"key": "00000008"}'),
    ]
    (OUT / "mixed.tar").write_bytes(tar_bytes(mixed))
    entry("mixed.tar", "tar",
          samples=["00000000", "00000001", "00000002", "00000003", "00000004", "00000005",
                   "00000006", "00000007", "00000008"],
          good=["00000000", "00000007", "00000008"],
          skipped={"00000000": "duplicate_key"},
          later={"00000001": {"reason": "undecodable_image", "stage": "decode"},
                 "00000002": {"reason": "empty_image", "stage": "decode"},
                 "00000003": {"reason": "image_too_large", "stage": "decode"},
                 "00000004": {"reason": "caption_not_utf8", "stage": "select"},
                 "00000005": {"reason": "missing_caption", "stage": "select"},
                 "00000006": {"reason": "missing_image", "stage": "select"}},
          note="the second 00000000 group (position 8) is the duplicate; the first one is good")

    # truncated.tar: three good samples, cut inside the fourth sample's jpg.
    good4 = [m for i in range(4) for m in ((f"{i:08d}.jpg", GOOD[i][0]), (f"{i:08d}.txt", GOOD[i][1]))]
    whole = tar_bytes(good4)
    with tarfile.open(fileobj=io.BytesIO(whole)) as tar:
        last_jpg = [m for m in tar.getmembers() if m.name == "00000003.jpg"][0]
    (OUT / "truncated.tar").write_bytes(whole[: last_jpg.offset_data + last_jpg.size // 2])
    entry("truncated.tar", "tar", samples=["00000000", "00000001", "00000002"],
          good=["00000000", "00000001", "00000002"], shard_failed="shard_truncated")

    # corrupt.tar: the header checksum of the third sample's jpg is wrong.
    corrupt = bytearray(tar_bytes(good4))
    with tarfile.open(fileobj=io.BytesIO(bytes(corrupt))) as tar:
        third = [m for m in tar.getmembers() if m.name == "00000002.jpg"][0]
    corrupt[third.offset + 148] ^= 0x01  # first digit of the octal checksum field
    (OUT / "corrupt.tar").write_bytes(bytes(corrupt))
    entry("corrupt.tar", "tar", samples=["00000000"], good=["00000000"],
          shard_failed="shard_corrupt",
          note="00000001 is complete but still open when the next header fails, so it is dropped")

    # hf.parquet: HF datasets layout, image struct {bytes, path} + caption; 2 row groups of 3.
    images = [GOOD[0][0], HTML, None, GOOD[1][0], b"", GOOD[2][0]]
    captions = [GOOD[0][1].decode(), "html as image", "bytes are null", None, "zero bytes",
                GOOD[2][1].decode()]
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({
        "image": pa.array([{"bytes": b, "path": f"{i:03d}.jpg"} for i, b in enumerate(images)],
                          type=image_type),
        "caption": pa.array(captions, type=pa.string()),
        "width": pa.array([64] * 6, type=pa.int32()),
    })
    pq.write_table(table, OUT / "hf.parquet", row_group_size=3, compression="snappy")
    entry("hf.parquet", "parquet", samples=["0", "1", "2", "3", "4", "5"], good=["0", "5"],
          later={"1": {"reason": "undecodable_image", "stage": "decode"},
                 "2": {"reason": "missing_image", "stage": "select"},
                 "3": {"reason": "missing_caption", "stage": "select"},
                 "4": {"reason": "empty_image", "stage": "decode"}})

    # binary.parquet: plain binary image column named `jpg`, caption column `text`, uncompressed.
    binary = pa.table({"jpg": pa.array([GOOD[3][0], GOOD[4][0]], type=pa.binary()),
                       "text": pa.array([GOOD[3][1].decode(), GOOD[4][1].decode()])})
    pq.write_table(binary, OUT / "binary.parquet", compression="none")
    entry("binary.parquet", "parquet", samples=["0", "1"], good=["0", "1"],
          note="columns image=jpg, caption=text")

    # broken_magic.parquet: hf.parquet with its trailing magic PAR1 -> PARX.
    data = bytearray((OUT / "hf.parquet").read_bytes())
    data[-1:] = b"X"
    (OUT / "broken_magic.parquet").write_bytes(bytes(data))
    entry("broken_magic.parquet", "parquet", samples=[], good=[], shard_failed="shard_corrupt")

    # bad_row_group.parquet: hf.parquet with the second row group's caption chunk overwritten.
    data = bytearray((OUT / "hf.parquet").read_bytes())
    column = pq.ParquetFile(OUT / "hf.parquet").metadata.row_group(1).column(2)
    start = min(o for o in (column.dictionary_page_offset, column.data_page_offset) if o is not None)
    data[start:start + 16] = b"\xff" * 16
    (OUT / "bad_row_group.parquet").write_bytes(bytes(data))
    entry("bad_row_group.parquet", "parquet", samples=["0", "1", "2"], good=["0"],
          later={k: v for k, v in manifest["hf.parquet"]["later"].items() if k in ("1", "2")},
          shard_failed="shard_corrupt",
          note="row group 0 (rows 0-2) arrives; row group 1's caption page header is garbage")

    # table.tsv + img/: OpenCLIP csv (filepath, title), paths relative to the table.
    img = OUT / "img"
    img.mkdir(exist_ok=True)
    (img / "a.jpg").write_bytes(GOOD[0][0])
    (img / "b.jpg").write_bytes(GOOD[1][0])
    (img / "empty.jpg").write_bytes(b"")
    (img / "html.jpg").write_bytes(HTML)
    rows = [b"filepath\ttitle",
            b"img/a.jpg\t" + GOOD[0][1],
            b"img/missing.jpg\ta file that is not there",
            b"img/b.jpg\tone\ttoo many cells",
            b"img/b.jpg\t" + NOT_UTF8,
            b"img/empty.jpg\tzero-byte image",
            b"img/html.jpg\thtml saved as jpg",
            b"\tno path at all",
            b"img/b.jpg\t" + GOOD[1][1]]
    (OUT / "table.tsv").write_bytes(b"\n".join(rows) + b"\n")
    entry("table.tsv", "csv", samples=["0", "3", "4", "5", "7"], good=["0", "7"],
          skipped={"1": "missing_image", "2": "shard_corrupt", "6": "missing_image"},
          later={"3": {"reason": "caption_not_utf8", "stage": "select"},
                 "4": {"reason": "empty_image", "stage": "decode"},
                 "5": {"reason": "undecodable_image", "stage": "decode"}},
          note="keys are 0-based data rows (line = key + 2); row 2 has 3 cells for 2 columns")

    # folder/: images with sidecar captions.
    folder = OUT / "folder"
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    for name, data in {"a.jpg": GOOD[2][0], "a.txt": GOOD[2][1], "b.png": GOOD_PNG,
                       "b.txt": b"a tiny png", "nocap.jpg": GOOD[3][0],
                       "sub/c.jpg": GOOD[4][0], "sub/c.txt": NOT_UTF8,
                       "sub/orphan.txt": b"caption without image",
                       "sub/zero.jpg": b"", "sub/zero.txt": b"zero-byte image"}.items():
        (folder / name).write_bytes(data)
    entry("folder/", "folder", samples=["a", "b", "sub/c", "sub/zero"], good=["a", "b"],
          skipped={"nocap": "missing_caption"},
          later={"sub/c": {"reason": "caption_not_utf8", "stage": "select"},
                 "sub/zero": {"reason": "empty_image", "stage": "decode"}})

    (OUT / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {len(manifest)} shards to {OUT}, {total} bytes")
    assert total < 1_000_000


if __name__ == "__main__":
    main()
