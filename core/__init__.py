"""Coreset Studio: pick the small part of an image dataset worth training on.

The library never imports Streamlit; every step (load a dataset, embed it, select a
subset, evaluate, export) is callable from Python and from the ``coreset-studio`` CLI.
"""

__version__ = "0.1.0"
