"""Whether answer digests recorded by the learning bench name one pool: ``python -m
bench.learning.pool PROJECT.db DIGEST ...`` prints, for each digest, how many of the project's
answers (in id order) it covers, or that no run of them gives it.

The bench digests a project's answers with ``data.answers_digest``; the same answers followed by
later ones (held-out answers, policies' answers) give another digest, so two digests that are
both found here were taken over one pool, cut at different lengths.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.learning.data import running_digests


def prefix_lengths(db: Path, digests: list[str]) -> dict[str, int | None]:
    """{digest: the number of answers, in id order, whose digest it is (None: no prefix)}."""
    found: dict[str, int | None] = dict.fromkeys(digests)
    for n, digest in enumerate(running_digests(db), start=1):
        if digest in found and found[digest] is None:
            found[digest] = n
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("db", type=Path, help="a project file the bench made")
    ap.add_argument("digests", nargs="+", help="digests from a journal's 'answers' fields")
    args = ap.parse_args(argv)
    if not args.db.exists():
        raise SystemExit(f"pool: {args.db} does not exist.")
    lengths = prefix_lengths(args.db, args.digests)
    for digest, n in lengths.items():
        print(f"{digest}: " + (f"the first {n} answers" if n else "no run of these answers"))
    return 0 if all(lengths.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
