"""Shared test settings: one thread for torch so tests do not fight over the 2 cores."""

import torch

torch.set_num_threads(1)
