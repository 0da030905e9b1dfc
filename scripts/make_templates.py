"""Writes duet's built-in zero-shot prompt templates from open_clip's copy of OpenAI's lists.

    python3 scripts/make_templates.py     # open-clip-torch 3.3.0

-> crates/duet-eval/templates/{openai_imagenet,simple_imagenet}.txt, one template per line with
`{}` where the class name goes. The CIFAR templates (`cifar.txt`) are OpenAI's 18 CIFAR-10
prompts (github.com/openai/CLIP data/prompts.md), which open_clip does not ship; this script
writes them too so every list has one source.
"""

from pathlib import Path

import open_clip
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES

CIFAR = [
    "a photo of a {}.", "a blurry photo of a {}.", "a black and white photo of a {}.",
    "a low contrast photo of a {}.", "a high contrast photo of a {}.", "a bad photo of a {}.",
    "a good photo of a {}.", "a photo of a small {}.", "a photo of a big {}.",
    "a photo of the {}.", "a blurry photo of the {}.", "a black and white photo of the {}.",
    "a low contrast photo of the {}.", "a high contrast photo of the {}.",
    "a bad photo of the {}.", "a good photo of the {}.", "a photo of the small {}.",
    "a photo of the big {}.",
]


def main():
    out = Path(__file__).resolve().parent.parent / "crates/duet-eval/templates"
    out.mkdir(parents=True, exist_ok=True)
    lists = {
        "openai_imagenet": [t("{}") for t in OPENAI_IMAGENET_TEMPLATES],
        "simple_imagenet": [t("{}") for t in SIMPLE_IMAGENET_TEMPLATES],
        "cifar": CIFAR,
    }
    for name, templates in lists.items():
        assert all(t.count("{}") == 1 for t in templates), name
        (out / f"{name}.txt").write_text("\n".join(templates) + "\n")
        print(name, len(templates), "templates", f"(open_clip {open_clip.__version__})")


if __name__ == "__main__":
    main()
