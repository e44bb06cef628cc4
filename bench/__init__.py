"""nnmodel's benchmark: python bench/run.py (CPU), python bench/gpu.py (one GPU); see the README's Performance section."""
