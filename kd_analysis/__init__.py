"""kd-lens library: analyse and run knowledge distillation of language models.

Imports nothing heavy at package import so the CLI's help, data inspection and the app's pages start fast;
torch and transformers are imported by the modules that need them.
"""

import os as _os

# Set before transformers is imported anywhere: quiet logs, no progress bars or telemetry in the app's output.
for _k, _v in {
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    _os.environ.setdefault(_k, _v)

from kd_analysis.exceptions import KDLensError  # noqa: E402

__all__ = ["KDLensError"]
__version__ = "0.1.0"
