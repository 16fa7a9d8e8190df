"""darnet-pl: DARNet for 3D chest CT (COVID-19 / common pneumonia / healthy)."""

__version__ = "0.1.0"
