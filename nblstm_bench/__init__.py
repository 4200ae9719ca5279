"""Benchmark helpers for nblstm: the grid, peer runners and the comparison command.

Not part of the nblstm package (never imported by it). ``python -m nblstm_bench --help``.
"""
