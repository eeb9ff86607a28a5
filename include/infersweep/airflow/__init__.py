"""infersweep.airflow"""
