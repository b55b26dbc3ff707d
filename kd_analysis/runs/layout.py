"""What a run folder holds, by name. The store writes these files and every reader finds them here, so a name is
never spelled twice. No torch and no pandas: any layer above the store may import it."""

CONFIG = "config.json"  # the run's settings as started, with its kind
STATUS = "status.json"  # state, pid, progress and phase, rewritten atomically
METRICS = "metrics.jsonl"  # one line per logged step or evaluation
PREDICTIONS = "predictions.jsonl"  # per-example records: the teacher at step 0, the student at its evaluations
LOG = "log.txt"
RESULT = "result.json"  # a background job's result
CHECKPOINT = "checkpoint"  # the student's weights (or LoRA adapter), when the run saves them
