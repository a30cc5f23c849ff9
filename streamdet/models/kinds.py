"""Model kind names, importable without torch.

They live in the config (``streamdet.config.models``), which validates ``models.kind`` against
them and must not import the models; this module keeps the models' own name for them.
"""

from streamdet.config.models import DEFAULT_KIND, MODEL_KINDS

__all__ = ["DEFAULT_KIND", "MODEL_KINDS"]
