"""infersweep.faults"""
