"""infersweep.plan"""
