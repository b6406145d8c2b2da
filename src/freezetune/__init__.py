"""freezetune: decide where to fine-tune a pretrained transformer, then fine-tune there, fast."""

__version__ = "0.1.0"
