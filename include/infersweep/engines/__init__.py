"""infersweep.engines"""
