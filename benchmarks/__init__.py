"""Benchmarks for keras-policy: one module per figure, one entry point (``benchmarks/run.py``).

Each ``fig*`` module has ``run(quick: bool) -> Figure``; :mod:`benchmarks.run` calls them in
order and writes ``BENCHMARKS.md``. Shared timing and reporting helpers are in
:mod:`benchmarks.common`.
"""
