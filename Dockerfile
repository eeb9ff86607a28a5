# The Airflow image for infersweep: the official Airflow 3.3.2 image plus this project.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root requirements.txt pyproject.toml README.md /opt/infersweep/
COPY --chown=airflow:root include /opt/infersweep/include
RUN pip install --no-cache-dir -r /opt/infersweep/requirements.txt -e /opt/infersweep
