"""Carbon engine: numba kernels over arrays, streaming state, emission factors, accounting."""
