"""Getting a model onto a GPU node: the download into the node's HF cache, the locks that serialise it per
cache domain, and the hub credentials (from an Airflow connection or the environment, never logged)."""
