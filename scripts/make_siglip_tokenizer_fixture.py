#!/usr/bin/env python3
"""Give the tiny SigLIP fixture a real SigLIP tokenizer, and the ids it must produce (issue 16).

Trains a SentencePiece unigram model of 1,000 pieces (the fixture's `vocab_size`; ids 0 <pad>,
1 </s>, 2 <unk> as in google/siglip-*'s spiece.model) on the bundled captions, saves it as a
transformers `SiglipTokenizer` into tests/fixtures/siglip-tiny/hf/ (`spiece.model`,
`tokenizer_config.json`, `special_tokens_map.json`), converts it to the `tokenizer.json` duet
reads with scripts/siglip_tokenizer.py (which checks it against `SiglipTokenizer`), and writes
tests/fixtures/siglip-tiny/tokenizer_cases.jsonl: one line per string,

    {"text": ..., "ids64": [...], "ids16": [...]}

the ids `SiglipTokenizer` (the reference: SigLIP v1 has no fast tokenizer in transformers) gives
with truncation=True, padding="max_length", max_length 64 (SigLIP's text length) and 16 (the
fixture model's; most captions are cut there, so truncation is exercised). Strings: every
caption of datasets/sample/MANIFEST.csv and every string of duet-data's CLIP tokenizer cases
(real clip-art and emoji captions plus edge cases: empty, whitespace, punctuation only, CJK,
accents, emoji, > 64 tokens). duet-data's tests/siglip_tokenizer.rs must reproduce every row.

Command (repository root; a few seconds; Python 3.11.7, transformers 5.25.0, tokenizers 0.23.3,
sentencepiece 0.2.3, protobuf):

    python3 scripts/make_siglip_tokenizer_fixture.py
"""

from __future__ import annotations

import json
import pathlib
import sys

import sentencepiece as spm
from transformers import SiglipTokenizer

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import siglip_tokenizer  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent
HF = REPO / "tests/fixtures/siglip-tiny/hf"
CASES = REPO / "tests/fixtures/siglip-tiny/tokenizer_cases.jsonl"


def main() -> None:
    texts = siglip_tokenizer.bundled_strings()
    # SentencePiece records its input and output paths in the model: a fixed directory keeps
    # spiece.model byte-identical from run to run.
    tmp = pathlib.Path("/tmp/duet-siglip-spm")
    tmp.mkdir(exist_ok=True)
    corpus = tmp / "corpus.txt"
    corpus.write_text("\n".join(t.lower() for t in texts if t.strip()), encoding="utf-8")
    prefix = tmp / "spiece"
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(prefix), model_type="unigram",
        vocab_size=1000, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
        character_coverage=1.0, num_threads=1, minloglevel=2,
    )
    SiglipTokenizer(vocab_file=f"{prefix}.model", model_max_length=64).save_pretrained(HF)
    slow = SiglipTokenizer.from_pretrained(HF)
    siglip_tokenizer.convert(HF)
    tokenizer_text = (HF / "tokenizer.json").read_text(encoding="utf-8")
    for length in (64, 16):
        wrong = siglip_tokenizer.check(slow, tokenizer_text, texts, length)
        assert not wrong, wrong[:3]
    rows64 = siglip_tokenizer.reference_rows(slow, texts, 64)
    rows16 = siglip_tokenizer.reference_rows(slow, texts, 16)
    with open(CASES, "w", encoding="utf-8") as f:
        for text, ids64, ids16 in zip(texts, rows64, rows16):
            f.write(json.dumps({"text": text, "ids64": ids64, "ids16": ids16},
                               ensure_ascii=False) + "\n")
    # The pad id is the eos id (1), so a row cut at 64 has content up to position 62.
    cut64 = sum(1 for row in rows64 if row[-2] != slow.pad_token_id)
    cut16 = sum(1 for row in rows16 if row[-2] != slow.pad_token_id)
    print(f"{len(texts)} strings, {cut64} cut at 64, {cut16} at 16; wrote {CASES}")


if __name__ == "__main__":
    main()
