"""Comparison reports over many runs: find and group runs, rank them, test them in pairs, plot sweeps.

``protocol`` says whether runs' per-user numbers can be compared, ``runs`` finds finished runs and
sweeps under folders, ``groups`` groups runs by config and names each group, ``tables`` ranks the
groups and pairs them, ``sweeps`` reads a ``marquee.sweep`` study, ``plots`` and ``markdown`` write
the report that ``python -m marquee.compare --out`` leaves.
"""
