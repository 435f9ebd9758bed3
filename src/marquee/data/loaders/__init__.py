"""Loaders: one small class per file layout whose ``load()`` returns a :class:`~marquee.data.raw.RawLog`."""
