import sys
from pathlib import Path

# Test helpers (tiny model fixtures) are imported as `fixtures.*` from every test folder.
sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402

# Tiny models run faster on one thread, and the machine is shared: more threads only contend.
torch.set_num_threads(1)
