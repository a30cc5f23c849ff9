"""Model kind names, importable without torch (the config validates against these)."""

MODEL_KINDS = ("framediff", "motion", "flow", "patchae", "fusion", "ae", "predictor")
DEFAULT_KIND = "motion"
