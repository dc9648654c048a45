"""Test setup: Triton runs its kernels on CPU through its interpreter when no GPU is present.

TRITON_INTERPRET must be set before triton decorates any kernel, so it is set here, before the tests import
weightcast or triton.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
