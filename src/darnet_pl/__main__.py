"""``python -m darnet_pl``: the training command (see ``darnet_pl.cli.train``)."""

from darnet_pl.cli.train import main

if __name__ == "__main__":
    main()
