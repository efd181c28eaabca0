"""People: who is known and how a face is matched (the gallery, templates and their index, the stranger cohort
and per-person thresholds, enrollment). Imports only ``edge.vision`` and the base modules."""
