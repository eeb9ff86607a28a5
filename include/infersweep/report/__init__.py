"""infersweep.report"""
