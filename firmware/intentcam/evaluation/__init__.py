"""Evaluation against ground truth (``intentcam eval``): MOT metrics and line counts, with a peer."""

from intentcam.evaluation.runner import Evaluation, detect_sequence
from intentcam.evaluation.sequence import Sequence, load_sequence

__all__ = ["Evaluation", "Sequence", "detect_sequence", "load_sequence"]
