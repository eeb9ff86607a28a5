"""infersweep.bench"""
