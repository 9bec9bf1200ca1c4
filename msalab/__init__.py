"""msalab: what the course's notebooks share (starting the shop, load, checks, plots).

A lab cell should read like the lesson: `shop.Monolith().start()`, `check.that(...)`.
"""

from . import check, load, plots, shop
from .errors import LabError

__all__ = ["check", "load", "plots", "shop", "LabError"]
