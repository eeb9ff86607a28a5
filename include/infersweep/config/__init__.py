"""infersweep.config"""
