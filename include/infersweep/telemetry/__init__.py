"""GPU telemetry of a serve group: samples from nvidia-smi (or the simulator's /metrics), energy per token
over a point's measured window (InferenceX's integration) and the `gpu_metrics.csv` its post-processing reads."""
