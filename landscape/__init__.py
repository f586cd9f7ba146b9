"""landscape: loss-landscape geometry of small networks on Fashion-MNIST."""

__version__ = "0.1.0"
