"""Test program: many rounds of secure sums, printing progress, so a test can disturb a
party mid-computation. Usage: rounds.py ROUNDS [DELAY_SECONDS]"""

import asyncio
import sys

from mpyc.runtime import mpc


async def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.05
    secint = mpc.SecInt(32)
    await mpc.start()
    total = 0
    for i in range(rounds):
        values = mpc.input(secint(i + mpc.pid))
        total += await mpc.output(mpc.sum(values))
        print(f"round {i} total {total}", flush=True)
        await asyncio.sleep(delay)
    await mpc.shutdown()


if __name__ == "__main__":
    mpc.run(main())
