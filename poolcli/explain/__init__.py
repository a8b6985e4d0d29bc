"""``poolcli explain``: where each output number comes from, window by window.

One home for the feature:

- :mod:`~poolcli.explain.model`: the explanation of every output cell (numbers from the engine)
  and its panels, with the cell styles of every rendering (NumPy);
- :mod:`~poolcli.explain.matrix`: MATRIX, a literal, ``.npy`` file or image, read as an array;
- :mod:`~poolcli.explain.render`: the terminal rendering (Rich, imported only by the command);
- :mod:`~poolcli.explain.picture`: one picture (header and panels) laid out once, written as SVG or
  painted as PNG, bounded in size (Pillow, lazily).

May import: nothing (this ``__init__`` imports no module; import the one you need).
"""
