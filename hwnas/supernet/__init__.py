"""Block supernets and their ratings (the DNA family).

A teacher cut into blocks (``teacher``) hands each block its input and target features (``features``); each block's
supernet (``blocks``) holds every candidate of that block and learns to mimic the teacher's block (``distill``);
``rating`` scores every candidate of a block against the teacher, ``ratings`` assembles and loads the run's ratings,
``twins`` pools candidates that compute the same functions, and ``seeds`` / ``reliability`` combine several
distillation seeds into one rating.
"""
