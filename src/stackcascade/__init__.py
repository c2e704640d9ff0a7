"""stackcascade: keeps dependent infrastructure stacks up to date."""

__version__ = "0.1.0"
