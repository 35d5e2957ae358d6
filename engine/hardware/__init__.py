"""What fits on this machine: the NVML probe, the memory estimate, the recommendation, the model catalog it plans over, and the install check (doctor)."""
