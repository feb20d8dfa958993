"""Benchmark runner: tasks x methods x seeds -> tables and plots."""
from .runner import BenchResult, bench, parse_pair

__all__ = ["BenchResult", "bench", "parse_pair"]
