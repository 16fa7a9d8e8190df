"""darnet-pl: DARNet for 3D chest CT (COVID-19 / common pneumonia / healthy)."""

from darnet_pl.config.resolvers import register_resolvers

__version__ = "0.2.0"

# The configs' own resolvers (the working folder, packaged files, sweep job folders) exist as soon as the package
# is imported, so that composing conf/ through Hydra's compose API works as it does from the command line.
register_resolvers()
