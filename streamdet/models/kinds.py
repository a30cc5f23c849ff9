"""Model kind names, importable without torch (the config validates against these)."""

MODEL_KINDS = (
    "framediff",
    "motionflow",
    "objects",
    "motion",
    "flow",
    "patchae",
    "fusion",
    "ae",
    "predictor",
)
DEFAULT_KIND = "objects"
