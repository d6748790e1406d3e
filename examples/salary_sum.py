"""Cross-organisation salary statistics: every party (an organisation) inputs the salaries
of its employees; together they learn the total, the head count and the average salary,
and nobody learns another organisation's figures.

    python salary_sum.py -M3            # MPyC's local test mode
    mpcid run --session S.json --as org -- salary_sum.py --salaries 52000,61000,58000
"""

import argparse
import random

from mpyc.runtime import mpc


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--salaries", help="comma-separated salaries of this party "
                        "(required in a session; MPyC's local test mode makes some up)")
    args = parser.parse_args()
    if args.salaries:
        salaries = [int(s) for s in args.salaries.split(",") if s]
    elif mpc.options.parties:
        # A real session: every party computes on its own figures, never on made-up ones.
        parser.error("give this party's salaries, e.g. --salaries 52000,61000,58000 "
                     "(with mpcid: after --, as in `mpcid join TOKEN -- --salaries ...`)")
    else:
        rng = random.Random(mpc.pid)
        salaries = [rng.randrange(30_000, 90_000, 100) for _ in range(3 + mpc.pid)]

    secint = mpc.SecInt(64)
    await mpc.start()
    totals = mpc.input(secint(sum(salaries)))
    counts = mpc.input(secint(len(salaries)))
    total = await mpc.output(mpc.sum(totals))
    count = await mpc.output(mpc.sum(counts))
    print(f"total {total}")
    print(f"count {count}")
    print(f"average {total / count:.2f}")
    await mpc.shutdown()


if __name__ == "__main__":
    mpc.run(main())
