"""The model catalog: prices, context windows, output limits, modalities and deprecations.

The data ships inside the package (``models.yaml``, with its sources and "as of" date) and the
config's ``catalog:`` section overrides or extends it::

    from aiwire import catalog

    cat = catalog.load(config.catalog)                    # CatalogConfig | mapping | None
    cat.lookup("gpt-4o-mini-2024-07-18")                  # ModelInfo for gpt-4o-mini
    cat.cost("gpt-4o", usage)                             # USD, cached input at the cached price
    cat.max_cost("gpt-4o", input_tokens=1200, max_output=500)   # what a budget reserves
    cat.context_check("gpt-4o", 130_000, 1000)            # raises ContextWindowExceededError
"""

from aiwire.catalog._catalog import Catalog, UnknownModelError, load
from aiwire.catalog._model import (
    CatalogConfig,
    LongContextPrice,
    Modality,
    ModelInfo,
    ModelOverride,
)

__all__ = [
    "Catalog",
    "CatalogConfig",
    "LongContextPrice",
    "Modality",
    "ModelInfo",
    "ModelOverride",
    "UnknownModelError",
    "load",
]
