"""Model kind names, importable without torch (the config validates against these)."""

MODEL_KINDS = ("framediff", "motion", "ae", "predictor")
DEFAULT_KIND = "motion"
