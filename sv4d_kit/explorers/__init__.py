"""Interactive explorers for the notebooks (ipywidgets): the sampler's settings and the attention maps."""
