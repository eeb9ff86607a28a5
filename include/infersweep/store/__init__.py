"""infersweep.store"""
