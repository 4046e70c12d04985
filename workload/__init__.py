"""The training workload that runs on a GPU node (or on an emulated node's CPUs with gloo).

Self-contained on purpose: it imports only torch/numpy and the standard library, never
``testbed``, ``drivers`` or ``emulator``, so it can be shipped to a node on its own.

- :mod:`workload.model`: a LLaMA-style decoder (RMSNorm, RoPE, SwiGLU, GQA) and named sizes.
- :mod:`workload.parallel`: TP x PP x DP rank grids with a placement across sites.
- :mod:`workload.timing`: per-iteration timing (barrier + sync, max over ranks) and its output.
- :mod:`workload.train`: the torchrun entry point (``python -m workload.train``).
"""
