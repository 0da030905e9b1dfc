#!/usr/bin/env python3
"""Reference data-loader throughput: OpenCLIP's webdataset training pipeline, timed.

Builds the train-time pipeline of open_clip_train/data.py get_wds_dataset() (the
decode-first form shipped alongside open_clip 3.3; open_clip_train is not part of the
open-clip-torch wheel, so the stages are rebuilt here from webdataset primitives):

    SimpleShardList(--shards)                      brace spec, e.g. DIR/{00000..00023}.tar
    [shuffle(2000, initial=500)]                   shard shuffle      (only with --shuffle)
    split_by_node, split_by_worker                 each DataLoader worker reads whole shards
    tarfile_to_samples(handler=warn)               group <key>.jpg/.txt/.json into samples
    [shuffle(5000, initial=1000)]                  sample shuffle     (only with --shuffle)
    select(has caption and image)
    decode("pilrgb")                               PIL decode + .convert("RGB")
    rename(image="jpg;png;jpeg;webp", text="txt")
    map_dict(image=image_transform(224, is_train=True), text=tokenizer(text)[0])
    to_tuple("image", "text")
    batched(--batch-size, partial=False)           default_collation_fn: stacked tensors
    DataLoader(batch_size=None, shuffle=False, num_workers=W, persistent_workers=W > 0)

image_transform(224, is_train=True) is RandomResizedCrop(224, scale=(0.9, 1.0), bicubic,
antialias) -> RGB -> ToTensor -> Normalize(OpenAI mean/std); the tokenizer is
open_clip.get_tokenizer("ViT-B-32"), i.e. SimpleTokenizer with the BPE vocab bundled in the
wheel (no network access; context length 77). Batches are ([B,3,224,224] float32, [B,77]
int64).

Deliberate differences from open_clip_train, none of which changes the per-sample work:
  * shard/sample shuffles are off by default (--shuffle turns them on, same buffer sizes;
    the shard shuffle is a plain wds.shuffle instead of open_clip's seeded detshuffle2);
  * tarfile_to_samples is webdataset's, not open_clip's group_by_keys_nothrow copy (same
    grouping for well-formed shards);
  * no .with_epoch(n): without --dataset-resampled it only truncates, and each worker stops
    at the end of its shards anyway;
  * torch.set_num_threads(1) in the main process and in every worker, so W workers use W
    cores; the multiprocessing start method is the platform default (fork on Linux).

Like open_clip, batched(partial=False) drops each worker's last partial batch every epoch:
samples are decoded and transformed but never delivered. With split_by_worker that tail is
per worker, so small sets lose a large share (1x set, B=256, W=2: 768 of 1188 delivered).
"samples" below counts delivered samples only.

Timing: the clock starts when the --warmup-batches'th batch arrives (so worker start-up and
pipeline fill are excluded) and stops at the last batch of the last epoch; --epochs passes
over the shards are iterated back to back (persistent workers, as in training).

Output: one JSON line on stdout:
  impl, workers, batch_size, epochs, warmup_batches, batches (timed), samples (timed),
  seconds, samples_per_sec,
  peak_rss_mib        = peak_rss_self_mib + peak_rss_child_mib: main process + largest worker,
  peak_rss_self_mib   = getrusage(RUSAGE_SELF).ru_maxrss, the main process's peak RSS,
  peak_rss_child_mib  = the largest VmHWM (peak RSS, /proc/PID/status) over the DataLoader
                        workers, read while the persistent workers are still alive; 0 when
                        --workers 0,
  peak_rss_workers_sum_mib = the sum of the workers' VmHWM,
  and the versions used. Not getrusage(RUSAGE_CHILDREN): importing torch/open_clip already
  forks short-lived helper processes from a ~450-700 MiB parent, and their inherited peak
  (~700 MiB) would swamp the workers'. Caveat: a forked worker's RSS includes the pages it
  shares copy-on-write with the main process (torch, numpy, open_clip imports: several
  hundred MiB), so self + child counts those twice, and the sum over W workers W+1 times.

Exact commands used (Debian bookworm, 2 cores, Python 3.11.7, torch 2.15.0, torchvision
0.29.2, open-clip-torch 3.3.0, webdataset 0.2.86 (open-clip-torch[training] pins
webdataset<=0.2.86), Pillow 13.0.0, numpy 2.4.6), from the repository root:

    pip install "webdataset==0.2.86"
    python3 scripts/bench/make_loader_shards.py --out /tmp/duet-bench/1x
    python3 scripts/bench/make_loader_shards.py --out /tmp/duet-bench/10x --repeat 10
    python3 scripts/bench/loader_python.py --shards '/tmp/duet-bench/1x/{00000..00002}.tar' \\
        --workers 1 --epochs 5
    python3 scripts/bench/loader_python.py --shards '/tmp/duet-bench/1x/{00000..00002}.tar' \\
        --workers 2 --epochs 5
    python3 scripts/bench/loader_python.py --shards '/tmp/duet-bench/10x/{00000..00023}.tar' \\
        --workers 2 --epochs 1
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import platform
import resource
import sys
import time

import open_clip
import PIL
import torch
import webdataset as wds

IMAGE_KEYS = "jpg;png;jpeg;webp"

def warn_and_continue(exn: Exception) -> bool:
    """webdataset handler: skip the bad sample, say so on stderr (open_clip logs and continues)."""
    print(f"webdataset: skipped a sample: {exn!r}", file=sys.stderr)
    return True


def has_caption_and_image(sample: dict) -> bool:
    return "txt" in sample and any(k in sample for k in IMAGE_KEYS.split(";"))


class Tokenize:
    """tokenizer(text)[0]: one [77] int64 row per caption (picklable for worker processes)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, text: str) -> torch.Tensor:
        return self.tokenizer(text)[0]


def peak_rss_kib(pid: int) -> int:
    """VmHWM (peak resident set size) of a live process, in KiB (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for pid {pid}")


def worker_init(_worker_id: int) -> None:
    torch.set_num_threads(1)


def build_loader(shards: str, workers: int, batch_size: int, shuffle: bool):
    preprocess_train = open_clip.image_transform(224, is_train=True)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")

    stages = [wds.SimpleShardList(shards)]
    if shuffle:
        stages.append(wds.shuffle(bufsize=2000, initial=500))
    stages += [wds.split_by_node, wds.split_by_worker,
               wds.tarfile_to_samples(handler=warn_and_continue)]
    if shuffle:
        stages.append(wds.shuffle(bufsize=5000, initial=1000))
    stages += [
        wds.select(has_caption_and_image),
        wds.decode("pilrgb", handler=warn_and_continue),
        wds.rename(image=IMAGE_KEYS, text="txt"),
        wds.map_dict(image=preprocess_train, text=Tokenize(tokenizer)),
        wds.to_tuple("image", "text"),
        wds.batched(batch_size, partial=False),
    ]
    dataset = wds.DataPipeline(*stages)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        persistent_workers=workers > 0,
        worker_init_fn=worker_init if workers > 0 else None,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", required=True,
                    help="webdataset shard spec, braces allowed: 'DIR/{00000..00002}.tar'")
    ap.add_argument("--workers", type=int, default=2,
                    help="DataLoader worker processes; 0 = decode in the main process (default 2)")
    ap.add_argument("--batch-size", type=int, default=256, help="batch size (default 256)")
    ap.add_argument("--epochs", type=int, default=1, help="passes over the shards (default 1)")
    ap.add_argument("--warmup-batches", type=int, default=2,
                    help="batches received before the clock starts (default 2)")
    ap.add_argument("--shuffle", action="store_true",
                    help="add open_clip's shard (2000/500) and sample (5000/1000) shuffle buffers")
    args = ap.parse_args()
    if args.workers < 0 or args.batch_size < 1 or args.epochs < 1 or args.warmup_batches < 0:
        ap.error("need --workers >= 0, --batch-size >= 1, --epochs >= 1, --warmup-batches >= 0")

    torch.set_num_threads(1)
    loader = build_loader(args.shards, args.workers, args.batch_size, args.shuffle)

    received = timed_batches = timed_samples = 0
    start = time.perf_counter() if args.warmup_batches == 0 else None
    end = None
    for _epoch in range(args.epochs):
        for images, texts in loader:
            assert images.shape == (args.batch_size, 3, 224, 224), images.shape
            assert texts.shape == (args.batch_size, 77), texts.shape
            received += 1
            if received == args.warmup_batches:
                start = time.perf_counter()
            elif received > args.warmup_batches:
                timed_batches += 1
                timed_samples += images.shape[0]
                end = time.perf_counter()
    if timed_batches == 0:
        print(f"error: only {received} batches delivered, none left after "
              f"{args.warmup_batches} warm-up batches; raise --epochs or use more shards",
              file=sys.stderr)
        return 1

    # The persistent workers are still alive (idle): read their peak RSS before shutting down.
    kib_workers = [peak_rss_kib(child.pid) for child in multiprocessing.active_children()]
    if len(kib_workers) != args.workers:
        print(f"warning: found {len(kib_workers)} worker processes, expected {args.workers}",
              file=sys.stderr)
    del loader
    gc.collect()
    kib_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kib_child = max(kib_workers, default=0)

    seconds = end - start
    print(json.dumps({
        "impl": "python",
        "workers": args.workers,
        "samples": timed_samples,
        "seconds": round(seconds, 4),
        "samples_per_sec": round(timed_samples / seconds, 1),
        "peak_rss_mib": round((kib_self + kib_child) / 1024, 1),
        "peak_rss_self_mib": round(kib_self / 1024, 1),
        "peak_rss_child_mib": round(kib_child / 1024, 1),
        "peak_rss_workers_sum_mib": round(sum(kib_workers) / 1024, 1),
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "warmup_batches": args.warmup_batches,
        "batches": timed_batches,
        "shuffle": args.shuffle,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "open_clip": open_clip.__version__,
            "webdataset": wds.__version__,
            "pillow": PIL.__version__,
        },
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
