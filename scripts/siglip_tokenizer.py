#!/usr/bin/env python3
"""Write the `tokenizer.json` duet reads for a SigLIP (v1) model directory.

google/siglip-* checkpoints ship their text tokenizer as a SentencePiece `spiece.model` only, and
transformers' `SiglipTokenizer` has no fast (tokenizers) twin: it lower-cases (when
`do_lower_case`, the default), strips ASCII punctuation, collapses whitespace and then runs
SentencePiece, appending `</s>`. duet tokenizes through the `tokenizers` crate, so it needs that
same pipeline as one `tokenizer.json`. This script builds it from the directory's
`spiece.model` and `tokenizer_config.json`, then checks its ids against `SiglipTokenizer` on the
bundled captions (truncation to 64, `padding="max_length"`: what SigLIP was trained with) and
refuses to write a file that disagrees anywhere.

    python3 scripts/siglip_tokenizer.py path/to/siglip-model-dir

Needs transformers, tokenizers, sentencepiece, protobuf (PyPI). SigLIP 2 directories already
hold a `tokenizer.json` (Gemma's) and need nothing from here.

The pipeline, as tokenizers components (`SiglipTokenizer.tokenize` -> `_tokenize` ->
`canonicalize_text` -> `sp_model.encode`):

    normalizer      [final-sigma rule, Lowercase] -> Replace(punctuation, "") -> Replace(\\s+, " ") -> Strip
                    -> SentencePiece's own normalisation (Precompiled charsmap)
    pre-tokenizer   Metaspace("▁", prepend always: SiglipTokenizer prefixes "▁")
    model           Unigram over the SentencePiece pieces and scores
    post-processor  "$A </s>"
"""

from __future__ import annotations

import argparse
import csv
import json
import pathlib
import string
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
CAPTION_SOURCES = [
    REPO / "datasets/sample/MANIFEST.csv",
    REPO / "crates/duet-data/tests/fixtures/tokenizer_cases.jsonl",
]


def bundled_strings() -> list[str]:
    """Every caption of datasets/sample plus the CLIP tokenizer cases (edge cases included)."""
    texts = []
    with open(CAPTION_SOURCES[0], newline="", encoding="utf-8") as f:
        texts += [row["caption"] for row in csv.DictReader(f)]
    with open(CAPTION_SOURCES[1], encoding="utf-8") as f:
        texts += [json.loads(line)["text"] for line in f]
    seen = set()
    return [t for t in texts if not (t in seen or seen.add(t))]


def tokenizer_json(spm_path: pathlib.Path, do_lower_case: bool, eos: str, unk: str) -> str:
    """The `tokenizer.json` text equal to `SiglipTokenizer` for this SentencePiece model."""
    from sentencepiece import sentencepiece_model_pb2 as sp_pb2
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    proto = sp_pb2.ModelProto()
    proto.ParseFromString(spm_path.read_bytes())
    pieces = [(p.piece, p.score) for p in proto.pieces]
    vocab = {piece: i for i, (piece, _) in enumerate(pieces)}
    for token in (eos, unk):
        if token not in vocab:
            sys.exit(f"{spm_path}: the SentencePiece vocabulary has no {token!r} piece")
    tok = Tokenizer(Unigram(pieces, unk_id=vocab[unk], byte_fallback=False))
    steps = []
    if do_lower_case:
        # Python's str.lower() writes a final capital sigma as "ς" (Unicode's Final_Sigma rule:
        # after a cased letter, not before one); tokenizers' Lowercase maps every "Σ" to "σ".
        cased = r"[\p{Lu}\p{Ll}\p{Lt}]"
        steps += [
            normalizers.Replace(Regex(f"(?<={cased})Σ(?!{cased})"), "ς"),
            normalizers.Lowercase(),
        ]
    steps += [
        normalizers.Replace(Regex("[" + "".join("\\" + c for c in string.punctuation) + "]"), ""),
        normalizers.Replace(Regex(r"\s+"), " "),
        normalizers.Strip(),
    ]
    charsmap = proto.normalizer_spec.precompiled_charsmap
    if charsmap:
        steps.append(normalizers.Precompiled(charsmap))
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A {eos}", special_tokens=[(eos, vocab[eos])]
    )
    tok.add_special_tokens([eos, unk])
    return tok.to_str(pretty=True)


def reference_rows(slow, texts: list[str], max_length: int) -> list[list[int]]:
    enc = slow(texts, truncation=True, max_length=max_length, padding="max_length")
    return enc["input_ids"]


def fast_rows(tokenizer_text: str, texts: list[str], max_length: int, pad_id: int):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer_text)
    tok.enable_truncation(max_length)
    tok.enable_padding(length=max_length, pad_id=pad_id)
    return [e.ids for e in tok.encode_batch(texts)]


def check(slow, tokenizer_text: str, texts: list[str], max_length: int) -> list[str]:
    """Every text whose ids differ, with both id lists."""
    want = reference_rows(slow, texts, max_length)
    got = fast_rows(tokenizer_text, texts, max_length, slow.pad_token_id)
    return [f"{t!r}: SiglipTokenizer {w}, tokenizer.json {g}"
            for t, w, g in zip(texts, want, got) if w != g]


def convert(model_dir: pathlib.Path) -> None:
    from transformers import SiglipTokenizer

    spm_path = model_dir / "spiece.model"
    if not spm_path.is_file():
        sys.exit(f"{spm_path}: not found (a SigLIP v1 directory holds its SentencePiece model)")
    slow = SiglipTokenizer.from_pretrained(model_dir)
    text = tokenizer_json(spm_path, slow.do_lower_case, slow.eos_token, slow.unk_token)
    texts = bundled_strings()
    wrong = check(slow, text, texts, 64)
    if wrong:
        sys.exit(f"tokenizer.json would differ from SiglipTokenizer on {len(wrong)} of "
                 f"{len(texts)} strings; not written. First: {wrong[0]}")
    out = model_dir / "tokenizer.json"
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}: ids equal to SiglipTokenizer on {len(texts)} strings (max_length 64)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=pathlib.Path)
    convert(parser.parse_args().model_dir)


if __name__ == "__main__":
    main()
