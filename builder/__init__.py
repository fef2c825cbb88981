"""tfbuild: build TensorFlow training images and run them (the host-side half)."""

__version__ = "0.1.0"
