"""Gradient training of marquee models with Lightning: the module, callbacks and the training entry."""
