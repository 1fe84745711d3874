"""Shared test settings."""

import torch

# Small models: one thread per test process is fastest and avoids oversubscription.
torch.set_num_threads(1)
