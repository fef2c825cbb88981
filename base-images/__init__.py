"""Jinja2 templates and the compatibility matrix for the images tfbuild renders."""
