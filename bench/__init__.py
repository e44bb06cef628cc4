"""nnmodel's benchmark: bench/run.py (CPU), bench/gpu.py (one GPU); the README's Performance section."""
