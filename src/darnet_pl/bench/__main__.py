"""``python -m darnet_pl.bench [--quick]``: all benchmarks, printed as JSON (see ``darnet_pl.bench.run``)."""

from darnet_pl.bench.run import main

if __name__ == "__main__":
    main()
