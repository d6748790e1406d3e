"""Sealed-bid (Vickrey) auction: every party bids; together they learn who won and the
second-highest bid (the price the winner pays), and no losing bid is revealed.

    python sealed_bid_auction.py -M3
    mpcid run --session S.json --as bidder -- sealed_bid_auction.py --bid 1200
"""

import argparse
import random

from mpyc.runtime import mpc


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bid", type=int, help="this party's bid (required in a session; "
                        "MPyC's local test mode makes one up)")
    args = parser.parse_args()
    if args.bid is None and mpc.options.parties:
        # A real session: every party bids for itself, never a made-up bid.
        parser.error("give this party's bid, e.g. --bid 1200 (with mpcid: after --, as in "
                     "`mpcid join TOKEN -- --bid 1200`)")
    bid = args.bid if args.bid is not None else random.Random(mpc.pid).randrange(100, 10_000)

    secint = mpc.SecInt(32)
    await mpc.start()
    bids = mpc.input(secint(bid))
    winner, highest = mpc.argmax(bids)
    # The price is the highest bid among the others: drop the winner's bid by zeroing it.
    others = [b * (1 - (winner == i)) for i, b in enumerate(bids)]
    price = mpc.max(others)
    print(f"winner {await mpc.output(winner)}")
    print(f"price {await mpc.output(price)}")
    await mpc.shutdown()


if __name__ == "__main__":
    mpc.run(main())
