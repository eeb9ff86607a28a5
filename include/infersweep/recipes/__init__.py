"""infersweep.recipes"""
