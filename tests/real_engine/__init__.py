"""Tests against a real vLLM (CPU build) installed in .venv-vllm; marked real_engine, run by make test-real-engine."""
