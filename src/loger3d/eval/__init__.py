"""Evaluation: metrics (``metrics``), the ``eval`` command line (``cli``) and its scorers (``traj``).

Numpy only at import; scipy (point clouds) and matplotlib (plots) are imported when used.
"""
