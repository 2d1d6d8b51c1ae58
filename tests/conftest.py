"""Test-wide settings.

One torch thread: the tests' tensors are small, so a second thread buys little, and on a busy
machine several processes each spinning two threads on two cores slow down many times over.
"""

import torch

torch.set_num_threads(1)
