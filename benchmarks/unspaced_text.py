"""Synthetic Chinese product reviews, written without spaces and the same reviews split into words (docs/text.md,
"Text without spaces"): a toy two-domain sentiment task that shows whether a tokeniser setting lets a run learn.

    .venv/bin/python benchmarks/unspaced_text.py --out runs/zh
    qianyi run source-only --source lines:runs/zh/zh-raw/books --target lines:runs/zh/zh-raw/kitchen --epochs 3

Each domain (books, kitchen) has 600 reviews, 300 positive (好评.txt) and 300 negative (差评.txt), one a line: 2-4
clauses, each of two filler words, one product word of its domain, one of 7 positive or 7 negative words, and one
more filler word, shuffled. `zh-raw` writes them as Chinese is written (clauses joined by '，', no spaces);
`zh-seg` puts a space between the words, as a word segmenter (jieba) would. Seeded: the same files every time.
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

POS = ["很好", "喜欢", "推荐", "满意", "完美", "精彩", "值得"]
NEG = ["很差", "失望", "糟糕", "退货", "浪费", "无聊", "后悔"]
DOMAINS = {"books": ["这本书", "小说", "作者", "故事", "情节", "翻译"],
           "kitchen": ["这口锅", "刀具", "炉子", "搅拌机", "水壶", "餐具"]}
FILLER = ["我", "觉得", "真的", "非常", "总体", "上周", "买了", "朋友", "说", "还是", "的", "了", "今天", "收到"]


def _clause(rng: random.Random, domain: str, positive: bool) -> list[str]:
    words = rng.sample(FILLER, 2) + [rng.choice(DOMAINS[domain])] + [rng.choice(POS if positive else NEG)] \
        + rng.sample(FILLER, 1)
    rng.shuffle(words)
    return words


def write(out: Path, seed: int = 0) -> list[Path]:
    """The zh-raw and zh-seg folders (``lines:`` specs: one folder per domain, one file per class) under ``out``."""
    rng = random.Random(seed)
    written = []
    for domain in DOMAINS:
        reviews = [([_clause(rng, domain, bool(s)) for _ in range(rng.randint(2, 4))], s) for s in [1] * 300 + [0] * 300]
        rng.shuffle(reviews)
        for style, join in (("raw", lambda cl: "，".join("".join(c) for c in cl) + "。"),
                            ("seg", lambda cl: " ， ".join(" ".join(c) for c in cl) + " 。")):
            folder = out / f"zh-{style}" / domain
            folder.mkdir(parents=True, exist_ok=True)
            for name, label in (("好评.txt", 1), ("差评.txt", 0)):
                (folder / name).write_text("".join(join(cl) + "\n" for cl, s in reviews if s == label),
                                           encoding="utf-8")
            written.append(folder)
    return written


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--out", default="runs/zh", help="folder to write zh-raw/ and zh-seg/ into (default runs/zh)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = p.parse_args()
    for folder in write(Path(args.out), args.seed):
        print(f"written: {folder}")


if __name__ == "__main__":
    main()
