"""Micro-benchmark of the subject matcher (omnibus.core.routing.trie.SubjectTrie).

Run before changing the trie walk loops or the cache policy:

    python bench/matcher.py            # all scenarios
    python bench/matcher.py --quick    # fewer iterations

Scenarios (per style): cache hit, cache miss (cache disabled), a wildcard SUB while the cache is
full (what a clear costs afterwards), and AMQP '#' backtracking; then Exchanges.route for direct,
topic (amq.topic, as a NATS publish takes it) and headers exchanges. Numbers are per operation.
"""

from __future__ import annotations

import argparse
import random
import time

from omnibus.core.routing.exchanges import Exchanges
from omnibus.core.routing.trie import CACHE_MAX, SubjectTrie


def _per_op(fn, n: int) -> float:
    start = time.perf_counter()
    fn(n)
    return (time.perf_counter() - start) / n


def build(style: str, n_patterns: int, seed: int = 1, cache_size: int = CACHE_MAX
          ) -> tuple[SubjectTrie, list[str]]:
    rnd = random.Random(seed)
    full = ">" if style == "nats" else "#"
    trie = SubjectTrie(style, cache_size=cache_size)
    words = [f"w{i}" for i in range(50)]
    subjects = []
    for i in range(n_patterns):
        toks = [rnd.choice(words) for _ in range(rnd.randint(2, 5))]
        subjects.append(".".join(toks))
        pat = list(toks)
        r = rnd.random()
        if r < 0.1:
            pat[rnd.randrange(len(pat))] = "*"
        elif r < 0.15:
            pat[-1] = full
        trie.insert(".".join(pat), i)
    return trie, subjects


def scenario(style: str, iters: int) -> None:
    trie, subjects = build(style, 10_000)
    hot = subjects[:512]

    def hit(n):
        m = trie.match
        for i in range(n):
            m(hot[i & 511])

    for s in hot:
        trie.match(s)
    print(f"{style:5} match, cache hit        {_per_op(hit, iters) * 1e9:8.0f} ns")

    nocache, _ = build(style, 10_000, cache_size=0)

    def miss(n):
        m = nocache.match
        for i in range(n):
            m(subjects[i % len(subjects)])

    print(f"{style:5} match, no cache (walk)  {_per_op(miss, iters // 4) * 1e9:8.0f} ns")

    def refill_after_wildcard_sub(n):
        for i in range(n):
            trie.insert("bench.*", ("sub", i))  # clears the cache
            for s in hot:
                trie.match(s)

    per = _per_op(refill_after_wildcard_sub, max(1, iters // 20_000))
    print(f"{style:5} wildcard insert + 512 re-walks {per * 1e6:8.0f} us")

    if style == "amqp":
        deep = SubjectTrie("amqp", cache_size=0)
        deep.insert("#.a.#.b.#", "q")
        key = ".".join(["x"] * 30 + ["a"] + ["y"] * 30 + ["b"])

        def back(n):
            for _ in range(n):
                deep.match(key)

        print(f"{style:5} '#.a.#.b.#' on 62 words  {_per_op(back, max(1, iters // 1000)) * 1e6:8.0f} us")


def exchanges(iters: int) -> None:
    xs = Exchanges()
    for i in range(1000):
        xs.bind("amq.direct", f"q{i}", f"key.{i}")
        xs.bind("amq.topic", f"q{i}", f"orders.{i % 50}.*" if i % 2 else f"orders.{i % 50}.#")
        xs.bind("amq.headers", f"q{i}", "", {"x-match": "any", "tenant": f"t{i % 100}"})
    keys = [f"key.{i}" for i in range(512)]
    subjects = [f"orders.{i % 50}.eu" for i in range(512)]

    def direct(n):
        r = xs.route
        for i in range(n):
            r("amq.direct", keys[i & 511])

    def topic(n):
        r = xs.route_subject
        for i in range(n):
            r(subjects[i & 511])

    headers = {"tenant": "t7", "other": 1}

    def hdrs(n):
        r = xs.route
        for _ in range(n):
            r("amq.headers", "", headers)

    print(f"exchange direct route (1000 bindings)     {_per_op(direct, iters) * 1e9:8.0f} ns")
    print(f"exchange amq.topic route_subject (cached)  {_per_op(topic, iters) * 1e9:8.0f} ns")
    print(f"exchange headers route (1000 bindings)    {_per_op(hdrs, max(1, iters // 1000)) * 1e6:8.0f} us")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    iters = 200_000 if args.quick else 1_000_000
    for style in ("nats", "amqp"):
        scenario(style, iters)
    exchanges(iters)


if __name__ == "__main__":
    main()
