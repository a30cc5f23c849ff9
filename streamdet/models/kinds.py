"""Model kind names, importable without torch (the config validates against these)."""

MODEL_KINDS = ("framediff", "motion", "patchae", "fusion", "ae", "predictor")
DEFAULT_KIND = "motion"
