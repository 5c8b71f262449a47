"""Packed datasets: a YOLO dataset as a few large tar shards plus an index, so DVC moves a handful of
objects instead of one per file (see the README's "Packed datasets").

`writer` packs and repacks (`yolopipe pack`); `index` and `extract` are what `stage` reads a pack with.
This file imports nothing, so stage's code deps stay the reader's modules.
"""
