"""infersweep.evals"""
