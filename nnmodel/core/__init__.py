"""The lecture's math, with no Lightning in it: activations g(z) beside g'(z), initialisations, the
feedforward network h_Θ(x), and backpropagation with its δ terms written out.

Everything here is plain torch; ``nnmodel.module`` is the one place where Lightning meets it.
"""
