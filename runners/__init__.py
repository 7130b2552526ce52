"""Launchers that run the harness on one process, N GPUs (torchrun) or a cluster (submitit)."""
